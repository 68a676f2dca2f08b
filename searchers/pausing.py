"""Searchers under a scheduler that pauses trials (``searchers.promotion``): the concurrency limit
counts the trials that hold a worker or wait for one, never the paused.

Ray's ``ConcurrencyLimiter`` and ``BasicVariantGenerator`` count a trial as live from its
suggestion until it ends, so with promotion-type ASHA the paused trials would fill the limit:
no new configuration could start while workers sit idle, and the run would end early by
stopping every paused trial. And when Tune stops a paused trial for good (``TuneController.
stop_trial`` on a PAUSED trial) it tells the searcher ``on_trial_complete`` without a result:
TPE and BayesOpt would learn nothing from it. ``PauseAwareLimiter`` hands the searcher the trial's
last result instead. The replay (``experiments.replay``) wires the same classes, so what it
simulates is what a real run does. Our GP searchers (``searchers.bayesopt``, ``searchers.rungbo``)
are told which live trials are paused before each suggestion: a paused trial trains nothing,
so it is no pending point of the GP (with every paused trial pending, one LCBench replay of
rungbo:promotion conditioned its GP on ~1,900 believed points and took 340 s).

``paused`` is the scheduler's ``paused_ids``: the trials waiting at a rung now. It is not part of
the state Tune saves (a pickled copy would point at a copy of the scheduler); Tune's own pickle
of the Tuner keeps the reference, and ``--resume`` restores it from there.
"""

from __future__ import annotations

import copy
from typing import Callable

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator


class PauseAwareLimiter(ConcurrencyLimiter):
    def __init__(self, searcher, max_concurrent: int, paused: Callable[[], set]):
        super().__init__(searcher, max_concurrent=max_concurrent)
        self._paused = paused
        self._last_results: dict[str, dict] = {}  # trial id -> its last result, for a stop while paused

    def suggest(self, trial_id: str):
        if trial_id in self.live_trials:
            # Ray draws a trial id as 8 random hex digits, and ConcurrencyLimiter asserts a new one is not
            # live; with ~1,900 paused trials live (an LCBench-size grid) about one run in 2,000 would
            # crash on it. Declined, Tune asks again at its next step with a new id.
            return None
        paused = self._paused()
        if self._limit_concurrency and len(self.live_trials - paused) >= self.max_concurrent:
            return None
        if hasattr(self.searcher, "paused"):  # our GP searchers: a paused trial is no pending point
            self.searcher.paused = set(paused)
        limit, self.max_concurrent = self.max_concurrent, 10**9  # the parent's count is the one above
        try:
            return super().suggest(trial_id)
        finally:
            self.max_concurrent = limit

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last_results[trial_id] = result
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        last = self._last_results.pop(trial_id, None)
        super().on_trial_complete(trial_id, result=result if result or error else last, error=error)

    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("searcher", "_paused")})


class PauseAwareGenerator(BasicVariantGenerator):
    """Grid and random search (Ray's generator) with the same count: paused trials hold no place."""

    def __init__(self, *args, paused: Callable[[], set], **kwargs):
        super().__init__(*args, **kwargs)
        self._paused = paused

    def next_trial(self):
        if self.max_concurrent > 0 and len(self._live_trials - self._paused()) >= self.max_concurrent:
            return None
        limit, self.max_concurrent = self.max_concurrent, 0  # the parent's count is the one above
        try:
            return super().next_trial()
        finally:
            self.max_concurrent = limit

    def get_state(self):
        state = super().get_state()
        if state:
            state = {k: v for k, v in state.items() if k != "_paused"}
        return state


def evictions(best_first: list[str], sizes: dict[str, float], budget: float) -> list[str]:
    """The paused trials a pausing scheduler stops for good, worst first, until the saved states of the rest
    (``sizes``, bytes) fit in ``budget``; ``best_first``: the paused trials with a known size, best ranked first
    (promotion ASHA ranks them by their place at their rung, freeze-thaw by its model's score)."""
    kept, total, victims = list(best_first), sum(sizes[t] for t in best_first), []
    while kept and total > budget:
        victim = kept.pop()
        total -= sizes[victim]
        victims.append(victim)
    return victims
