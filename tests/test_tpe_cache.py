"""HyperOpt's TPE with the posterior graph cached and the observations converted incrementally
(searchers/tpe_cache.py): the same suggestions as HyperOpt's own, for less work."""

from __future__ import annotations

import math

import numpy as np

from hyperopt import tpe
from ray import tune
from ray.tune.search.hyperopt import HyperOptSearch

from searchers import tpe_cache

SPACE = {"lr": tune.loguniform(1e-4, 1e-1), "width": tune.choice([16, 32, 64, 128]), "act": tune.choice(["relu", "tanh"])}


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
