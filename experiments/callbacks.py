"""Ray Tune callbacks of the runner."""

from __future__ import annotations

from ray import tune


class SchedulerState(tune.Callback):
    """Keeps the scheduler's state in Tune's experiment snapshots.

    Tune snapshots the searcher's state but not the scheduler's, so after ``Tuner.restore``
    ASHA would start again with empty rungs and stop the remaining trials less eagerly than an
    uninterrupted run would. Tune pickles this callback together with the scheduler it points
    to (one pickle, ``tuner.pkl``: the shared reference survives), saves ``get_state`` with
    every snapshot, and on resume calls ``set_state`` before the restored trials are added
    back to the scheduler.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def get_state(self) -> dict:
        return {"scheduler": dict(self.scheduler.__dict__)}

    def set_state(self, state: dict) -> None:
        self.scheduler.__dict__.update(state["scheduler"])
