"""Ray Tune callbacks of the runner."""

from __future__ import annotations

from ray import tune

from core.rules import is_out_of_memory, oom_retry_share
from experiments.tune_adapter import failure_texts, retry_with_gpu_share, trial_gpu_share, upload_trial_logs


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
        # a scheduler with a model keeps what rebuilds it, not the model (searchers/freeze_thaw.py)
        snapshot = getattr(self.scheduler, "snapshot", None)
        return {"scheduler": snapshot() if snapshot else dict(self.scheduler.__dict__)}

    def set_state(self, state: dict) -> None:
        restore = getattr(self.scheduler, "restore_snapshot", None)
        if restore:
            restore(state["scheduler"])
        else:
            self.scheduler.__dict__.update(state["scheduler"])


class KeepPausedTrialLogs(tune.Callback):
    """A pausing scheduler's trials keep their whole curve: as a trial's pause checkpoint is saved, its
    log files go to storage, so Tune's copy back when it resumes the trial is current
    (tune_adapter.upload_trial_logs)."""

    def on_trial_save(self, iteration, trials, trial, **info):
        upload_trial_logs(trial)


class OutOfMemoryRetry(tune.Callback):
    """A trial that ran out of GPU memory is re-queued once with the whole card (core.rules.oom_retry_share),
    never with the share it failed at: next to the same packed trials it would most likely fail
    the same way in each of Tune's retries. The retry is the trial's last (a failure at the whole
    card is final); other errors keep Tune's ``max_failures``. Tune calls this as it re-queues the
    trial, before the trial is placed again, so the new request is what Ray places."""

    def on_trial_recover(self, iteration, trials, trial, **info):
        failures = failure_texts(trial)
        if not failures or not is_out_of_memory(failures[-1]):
            return
        share = oom_retry_share(trial_gpu_share(trial))
        if share is not None:
            retry_with_gpu_share(trial, share, last=True)
