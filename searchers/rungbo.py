"""A Bayesian-optimization searcher that learns from every rung of ASHA, not only from each
trial's last report: BOHB's rule (Falkner et al. 2018) with our GP in place of its TPE.

Under ASHA most trials stop at the first rungs. ``BayesOptSearcher`` registers each with the best
value it reached before the stop, so its GP mixes one-epoch scores with full-length ones as if
they were the same kind of measurement. BOHB fits its model at one budget only: the largest
budget (here: the resource, e.g. epochs trained) at which at least ``min_points`` trials have
reported, ``d + 1`` by default (BOHB's ``min_points_in_model``, d the number of searched
hyperparameters; declared a priori, not tuned on our benchmarks). Every configuration is then
compared at the same fidelity, and as trials climb the rungs the model moves up with them.

What counts as an observation at resource r: the best value the trial reported at or before r
(the project's rule for what a trial is worth, applied up to r). Results reach the searcher
through Ray's ``on_trial_result`` (every report ASHA lets continue) and ``on_trial_complete``
(the report at which ASHA stopped it, which Tune does not pass to ``on_trial_result``). Trials
still running below r are pending (the kriging believer of ``BayesOptSearcher``; a trial paused
at a rung is not running, so not pending); errored or
NaN trials score the worst value observed at r. Until some resource has ``min_points`` trials,
suggestions are random, as in BOHB. Under FIFO the same rule learns from the partial curves
of running trials.

Which resource: ``resource_attr`` of each result (the task's, e.g. ``epoch``; Tune's
``training_iteration`` by default).
"""

from __future__ import annotations

import math

from searchers.bayesopt import BayesOptSearcher


class RungBOSearcher(BayesOptSearcher):
    """``BayesOptSearcher`` fitted at the highest resource level with ``min_points`` observations."""

    def __init__(self, *args, resource_attr: str = "training_iteration", min_points: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if min_points is not None and min_points < 2:
            raise ValueError(f"min_points must be at least 2, got {min_points}")
        self._resource_attr = resource_attr
        self._min_points = min_points
        self._params_of: dict[str, dict] = {}  # trial_id -> bayes_opt params, every trial suggested
        self._curves: dict[str, dict[float, float]] = {}  # trial_id -> {resource: best target up to it}
        self._failed: set[str] = set()

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if trial_id in self._live:
            self._params_of[trial_id] = self._live[trial_id]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)
        self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:
            self._failed.add(trial_id)
        elif result:
            self._record(trial_id, result)
        super().on_trial_complete(trial_id, result, error)

    def _record(self, trial_id: str, result: dict) -> None:
        if not result or self._metric not in result or self._resource_attr not in result:
            return
        try:
            target = self._sign * float(result[self._metric])
            resource = float(result[self._resource_attr])
        except (TypeError, ValueError):
            return
        if not math.isfinite(target):
            self._failed.add(trial_id)
            return
        curve = self._curves.setdefault(trial_id, {})
        best_before = max((v for r, v in curve.items() if r < resource), default=-math.inf)
        curve[resource] = max(target, best_before, curve.get(resource, -math.inf))

    @property
    def _needed(self) -> int:
        return self._min_points or len(self._params) + 1

    def level(self) -> float | None:
        """The resource the model is fitted at: the highest with ``min_points`` trials (None: none yet)."""
        counts: dict[float, int] = {}
        for curve in self._curves.values():
            for resource in curve:
                counts[resource] = counts.get(resource, 0) + 1
        enough = [r for r, n in counts.items() if n >= self._needed]
        return max(enough) if enough else None

    def _training_data(self):
        level = self.level()
        if level is None:
            return [], []
        observed, pending = [], []
        for trial_id, params in self._params_of.items():
            curve = self._curves.get(trial_id, {})
            if level in curve:
                observed.append((params, curve[level]))
            elif trial_id in self._live and trial_id not in self._failed and trial_id not in self.paused:
                pending.append(params)
        worst = min(t for _, t in observed)
        observed += [(self._params_of[t], worst) for t in self._failed if t in self._params_of and level not in
                     self._curves.get(t, {})]
        return observed, pending
