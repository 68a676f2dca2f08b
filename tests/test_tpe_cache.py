"""HyperOpt's TPE with the posterior graph cached and the observations converted incrementally
(searchers/tpe_cache.py): the same suggestions as HyperOpt's own, for less work, and the same on
every CPU where hyperopt's depend on it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from hyperopt import tpe
from ray import tune
from ray.tune.search.hyperopt import HyperOptSearch

from searchers import tpe_cache
from tests.conftest import ROOT

SPACE = {"lr": tune.loguniform(1e-4, 1e-1), "width": tune.choice([16, 32, 64, 128]), "act": tune.choice(["relu", "tanh"])}


@pytest.fixture(autouse=True)
def hyperopt_breaks_ties_by_position(monkeypatch):
    """hyperopt's own order among ties is whatever the CPU's SIMD sort leaves, so "the same suggestions
    as hyperopt" can only mean the same as hyperopt with that order fixed as ours: by position."""
    monkeypatch.setattr(tpe, "np", tpe_cache._TIES_BY_POSITION)


def score(config):
    return -(math.log10(config["lr"]) + 2.5) ** 2 - abs(math.log2(config["width"]) - 6) \
        + (0.3 if config["act"] == "tanh" else 0.0)


def run(cached: bool, n: int = 60, pending: int = 3, error_every: int = 0):
    """The configurations suggested, and the searcher. ``error_every``: every so many ended trials error
    (hyperopt then drops the trial's record from its list)."""
    cls = tpe_cache.lookup_searcher_class() if cached else HyperOptSearch
    searcher = cls(SPACE, metric="score", mode="max", n_initial_points=10, random_state_seed=7)
    if cached:
        searcher.algo = tpe_cache.IncrementalSuggest(searcher.algo)
    configs, live, ended = [], [], 0
    for i in range(n):
        config = searcher.suggest(str(i))
        configs.append(config)
        live.append((str(i), config))
        for trial_id, running in live:  # intermediate reports look each record up (Ray scans them all)
            searcher.on_trial_result(trial_id, {"score": score(running) - 1.0})
        if len(live) > pending:  # a few trials running at once: records of running trials are in the list too
            trial_id, done = live.pop(0)
            ended += 1
            if error_every and ended % error_every == 0:
                searcher.on_trial_complete(trial_id, error=True)
            else:
                searcher.on_trial_complete(trial_id, {"score": score(done)})
    return configs, searcher


def test_the_cached_tpe_suggests_exactly_what_hyperopt_does_and_converts_each_record_once(monkeypatch):
    converted = []
    original = tpe.miscs_to_idxs_vals

    def counting(miscs, keys=None):
        converted.append(len(miscs))
        return original(miscs, keys)

    monkeypatch.setattr(tpe, "miscs_to_idxs_vals", counting)
    plain, _ = run(cached=False)
    plain_work = sum(converted)
    converted.clear()
    assert run(cached=True)[0] == plain
    # hyperopt converts every record at every model-based suggestion (quadratic); ours each once
    assert sum(converted) <= 60 < plain_work / 10
    assert tpe.build_posterior_wrapper.__module__ == "hyperopt.tpe" and tpe.miscs_to_idxs_vals is counting


def test_errored_trials_leave_hyperopts_list_and_the_suggestions_stay_the_same():
    plain, theirs = run(cached=False, n=80, error_every=5)
    ours_configs, ours = run(cached=True, n=80, error_every=5)
    assert ours_configs == plain
    assert isinstance(ours._hpopt_trials, tpe_cache.IncrementalTrials)
    listed = [t["tid"] for t in ours._hpopt_trials.trials]  # the incremental refresh's list
    assert listed == [t["tid"] for t in theirs._hpopt_trials.trials]
    assert len(listed) < 80  # the errored trials' records are gone from it
    ours._hpopt_trials.rebuild()
    ours._hpopt_trials.refresh()
    assert [t["tid"] for t in ours._hpopt_trials.trials] == listed  # as hyperopt's full refresh makes it


def test_the_vectorized_split_returns_hyperopts_arrays():
    rng = np.random.default_rng(0)
    for n_obs, n_loss in ((0, 0), (0, 5), (7, 7), (40, 25), (300, 300)):
        o_idxs = rng.integers(0, max(n_loss, 1) * 2, n_obs).tolist()  # some observed trials have no loss
        o_vals = rng.normal(size=n_obs).tolist() if n_obs % 2 else rng.integers(0, 4, n_obs).tolist()
        l_idxs = rng.permutation(max(n_loss, 1) * 2)[:n_loss].tolist()
        l_vals = rng.integers(0, 5, n_loss).astype(float).tolist()  # duplicate losses
        for gamma in (0.25, 1.0):
            theirs = tpe.ap_split_trials(o_idxs, o_vals, l_idxs, l_vals, gamma)
            ours = tpe_cache.ap_split_trials(o_idxs, o_vals, l_idxs, l_vals, gamma)
            for a, b in zip(theirs, ours):
                assert a.dtype == b.dtype and a.tolist() == b.tolist(), (n_obs, n_loss, gamma)


def test_the_split_breaks_ties_by_position_with_nans_last():
    losses = np.array([3.0, 1.0, 2.0, 1.0, np.nan, 1.0, 0.5])
    assert np.flatnonzero(tpe_cache.good_trials(losses, 3)).tolist() == [1, 3, 6]  # 0.5, then the first two 1.0s
    assert np.flatnonzero(tpe_cache.good_trials(losses, 7)).tolist() == list(range(7))
    assert not tpe_cache.good_trials(losses, 0).any()
    few = np.array([np.nan, 2.0, np.nan, 1.0])
    assert np.flatnonzero(tpe_cache.good_trials(few, 3)).tolist() == [0, 1, 3]  # both real ones, then the first NaN


ON_THIS_CPU = """
import json, numpy as np
from hyperopt import Trials, fmin, hp, tpe
from searchers.tpe_cache import IncrementalSuggest, good_trials
losses = np.random.default_rng(0).integers(0, 20, 5000).astype(float)  # many ties at every split point
# tied losses and tied observed values (TPE's Parzen estimator sorts those too)
space = {"a": hp.quniform("a", 0, 8, 1), "b": hp.choice("b", [0, 1, 2]), "c": hp.uniform("c", 0, 1)}
trials = Trials()
fmin(lambda c: float(int(c["a"]) % 3 + c["b"]) + round(c["c"], 1), space, algo=IncrementalSuggest(tpe.suggest),
     max_evals=120, trials=trials, rstate=np.random.default_rng(0), show_progressbar=False)
print(json.dumps({"split": [np.flatnonzero(good_trials(losses, n)).tolist() for n in (7, 25, 300)],
                  "suggested": [t["misc"]["vals"] for t in trials.trials]}, default=float))
"""


def _dispatch_targets() -> list[str]:
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    return [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]


def test_tpe_suggests_the_same_whatever_sort_the_cpu_runs():
    """numpy picks its sort's SIMD code per CPU (AVX-512, AVX2, plain on x86) and each leaves ties in
    its own order; NPY_DISABLE_CPU_FEATURES makes this machine run the lesser ones, as other CPUs would.
    With hyperopt's own order among ties the suggestions above differ on this machine's plain sort."""
    targets = _dispatch_targets()
    outs = []
    for keep in range(len(targets), -1, -1):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(targets[keep:]), "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", ON_THIS_CPU], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(json.loads(done.stdout))
    losses = np.random.default_rng(0).integers(0, 20, 5000).astype(float)
    by_position = [sorted(np.argsort(losses, kind="stable")[:n].tolist()) for n in (7, 25, 300)]
    assert all(o["split"] == by_position for o in outs)  # while numpy's own order differs (here: three orders)
    assert all(o["suggested"] == outs[0]["suggested"] for o in outs)


def test_a_restored_searcher_suggests_what_the_uninterrupted_one_does(tmp_path):
    """Tune saves the searcher with the experiment and restores it on --resume: the history kept
    between suggestions (in the searcher's algo) travels with it."""

    def searcher():
        s = tpe_cache.lookup_searcher_class()(SPACE, metric="score", mode="max", n_initial_points=5,
                                              random_state_seed=3)
        s.algo = tpe_cache.IncrementalSuggest(s.algo)
        return s

    def step(s, i):
        config = s.suggest(str(i))
        s.on_trial_complete(str(i), {"score": score(config)})
        return config

    whole = searcher()
    uninterrupted = [step(whole, i) for i in range(40)]
    first = searcher()
    head = [step(first, i) for i in range(25)]
    first.save(str(tmp_path / "searcher.pkl"))
    again = searcher()
    again.restore(str(tmp_path / "searcher.pkl"))
    assert head + [step(again, i) for i in range(25, 40)] == uninterrupted
    assert isinstance(again._hpopt_trials, tpe_cache.IncrementalTrials)
