"""Which trials go on from a rung, judged by where their curves are heading: the learning-curve-aware
choice of promotion ASHA (``PromotionASHA(choice="curve")``, schedulers ``promotion_curve`` and
``promotion_curve_anytime``). DyHPO's idea (Wistuba et al. 2022: resume the trial whose predicted
value at the next budget is best) inside Li et al.'s count: the n trials recorded at a rung are ranked
by their *predicted value at the next rung* instead of their value at this one, and the top
floor(n / eta) may go on, as many as the rule lets through with the values themselves.

The prediction: a trial's value at the next rung (or at ``max_t`` after the last rung) = its value
here + the gain between the two rungs predicted at its configuration, by our GP (searchers/gp.py:
ARD Matern-5/2, MAP priors, the refit schedule; the posterior mean) fitted to the gains of the
trials recorded at both, a random subset of at most ``gp.MAX_POINTS``. A configuration whose kind
gains much after the rung (a slow starter) is judged by where it is heading, one whose kind has
levelled off by where it is. Until ``d + 1`` trials (d: the searched hyperparameters; BOHB's
``min_points_in_model``, as searchers.rungbo) are recorded at both rungs, the predicted gain is 0:
the rule itself.

Why the gain, and not the next value from (configuration, epochs) as MOBSTER's and DyHPO's models
take it: a trial's own value here is the best single predictor of its next one; the gain keeps it
exactly and learns only the correction, from the few hundred trials that reached both rungs, where a
GP over every rung-1 record would be fitted to thousands (or a subset that leaves the judged trial's
own record out).

Every setting here was declared before it was measured (docs/lcbench-curve-choice/PLAN.md).
"""

from __future__ import annotations

import bisect

import numpy as np

from searchers import gp


class CurveRanking:
    """Each rung's recorded trials ranked by their predicted value at the next rung, best first, as
    (-predicted, arrival, trial id): the same tuples as PromotionASHA's ``_ranked``."""

    def __init__(self, space: dict, seed: int, next_rung: list[int | None]):
        from searchers.bayesopt import BayesOptSearcher

        self._encoder = BayesOptSearcher(space=space, random_state=seed)  # the GP's encoding of configurations
        self._min_pairs = len(self._encoder.searched) + 1
        self._next = next_rung  # rung -> the rung after it in its bracket; None: max_t
        self._rng = np.random.RandomState(seed)
        self._rows: dict[str, np.ndarray] = {}  # trial id -> its configuration's GP input
        self.final: dict[str, float] = {}  # trial id -> its signed value at max_t
        self._models: list[gp.Model | None] = [None] * len(next_rung)
        # rung -> (trials at the next level, trials here, posterior or None, ranking, trial id -> predicted)
        self._cache: list[tuple | None] = [None] * len(next_rung)

    def remember(self, trial_id: str, config: dict) -> None:
        if trial_id not in self._rows:
            self._rows[trial_id] = self._encoder.arrays([config])[0]

    def ranking(self, rung: int, recorded: list[dict[str, float]]) -> list[tuple]:
        return self._ranked(rung, recorded)[0]

    def predicted(self, rung: int, recorded: list[dict[str, float]], trial_id: str) -> float:
        return self._ranked(rung, recorded)[1][trial_id]

    def _ranked(self, rung: int, recorded: list[dict[str, float]]) -> tuple[list[tuple], dict[str, float]]:
        here = recorded[rung]
        there = self.final if self._next[rung] is None else recorded[self._next[rung]]
        cached = self._cache[rung]
        if cached is not None and cached[0] == len(there) and cached[1] == len(here):
            return cached[3], cached[4]
        if cached is None or cached[0] != len(there):  # new gains: refit, and predict every trial here again
            posterior = self._fit(rung, here, there)
            ranking, keys, start = [], {}, 0
        else:  # only new trials here: predict those
            posterior, ranking, keys, start = cached[2], cached[3], cached[4], cached[1]
        new = list(here)[start:]
        if new:
            gains = posterior.predict(np.array([self._rows[t] for t in new])) if posterior is not None else np.zeros(len(new))
            added = []
            for arrival, (trial_id, gain) in enumerate(zip(new, gains.tolist()), start=start + 1):
                keys[trial_id] = here[trial_id] + gain
                added.append((-keys[trial_id], arrival, trial_id))
            if start == 0:
                ranking = sorted(added)
            else:
                for entry in added:
                    bisect.insort(ranking, entry)
        self._cache[rung] = (len(there), len(here), posterior, ranking, keys)
        return ranking, keys

    def _fit(self, rung: int, here: dict[str, float], there: dict[str, float]):
        """The GP of the gain from this rung to the next, or None while fewer than d + 1 trials reached both."""
        pairs = [t for t in there if t in here]
        if len(pairs) < self._min_pairs:
            return None
        X = np.array([self._rows[t] for t in pairs])
        y = np.array([there[t] - here[t] for t in pairs])
        if len(y) > gp.MAX_POINTS:
            keep = self._rng.choice(len(y), gp.MAX_POINTS, replace=False)
            X, y = X[keep], y[keep]
        if self._models[rung] is None:
            # hyperparameters optimized whenever the gains grew by a fifth (not at each of the first 50 as
            # the searcher's): refitted at every new gain, that was half of an LCBench replay's time
            self._models[rung] = gp.Model(self._encoder.target_space(), self._rng, always_optimize=0)
        return self._models[rung].fit(X, y, len(pairs))
