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


def run(cached: bool, n: int = 60, pending: int = 3):
    cls = tpe_cache.lookup_searcher_class() if cached else HyperOptSearch
    searcher = cls(SPACE, metric="score", mode="max", n_initial_points=10, random_state_seed=7)
    if cached:
        searcher.algo = tpe_cache.cached_posterior(searcher.algo)
    configs, live = [], []
    for i in range(n):
        config = searcher.suggest(str(i))
        configs.append(config)
        live.append((str(i), config))
        for trial_id, running in live:  # intermediate reports look each record up (Ray scans them all)
            searcher.on_trial_result(trial_id, {"score": score(running) - 1.0})
        if len(live) > pending:  # a few trials running at once: records of running trials are in the list too
            trial_id, done = live.pop(0)
            searcher.on_trial_complete(trial_id, {"score": score(done)})
    return configs


def test_the_cached_tpe_suggests_exactly_what_hyperopt_does_and_converts_each_record_once(monkeypatch):
    converted = []
    original = tpe.miscs_to_idxs_vals

    def counting(miscs, keys=None):
        converted.append(len(miscs))
        return original(miscs, keys)

    monkeypatch.setattr(tpe, "miscs_to_idxs_vals", counting)
    plain = run(cached=False)
    plain_work = sum(converted)
    converted.clear()
    assert run(cached=True) == plain
    # hyperopt converts every record at every model-based suggestion (quadratic); ours each once
    assert sum(converted) <= 60 < plain_work / 10
    assert tpe.build_posterior_wrapper.__module__ == "hyperopt.tpe" and tpe.miscs_to_idxs_vals is counting


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
