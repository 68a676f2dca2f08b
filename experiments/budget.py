"""``--time-budget``: every method of a comparison may spend the same compute, then stops.

Compute is what the replay counts (experiments.replay) and the anytime plot's x-axis: each epoch's
``epoch_seconds`` (training and validation; Tune's ``time_this_iter_s`` where a trainable reports
none) times the trial's GPU share on a GPU (GPU-seconds), or times 1 on the CPU (trial-seconds).
Parallel trials each spend their own, so a budget is not wall-clock time: at 4 trials at once
on a quarter of the card each, an hour of GPU-seconds takes about an hour; on 2 CPUs at 2
trials at once, an hour of trial-seconds takes about half an hour.

When a method reaches its budget, the trials running then end at their next epoch (it counts:
its weights and values are kept); nothing else is trained (a trial Tune starts in between ends
before its first epoch counts). So a method spends the budget plus at most one epoch of each
trial that was running when it reached it.

Ray Tune's own ``TuneConfig(time_budget_s=...)`` counts wall-clock time and ends running trials
at once, mid-epoch; Tune's stoppers see one trial's result at a time. So this is a ``Stopper``
(it ends a trial once the budget is spent, and the experiment once the trials running at that
moment have reported) and a ``Callback`` that sees every trial (which are running) and keeps the
compute spent in Tune's experiment snapshot (``get_state``), so ``--resume`` spends only the rest.
Tune pickles both with the run config in one pickle: the shared ``Ledger`` survives a restore.
"""

from __future__ import annotations

from ray import tune

from core.rules import epoch_compute

def compute_spent(trials, curves, on_gpu: bool, default_share: float) -> float:
    """A method's compute from its tables, as the stopper counts it: each recorded epoch's seconds
    x its trial's GPU share (x 1 on the CPU)."""
    return float(sum(epoch_compute(curves, trials, on_gpu, default_share)))


def epoch_cost(result: dict, on_gpu: bool, default_share: float) -> float:
    """The compute one reported epoch spent (module docstring)."""
    seconds = result.get("epoch_seconds")
    if seconds is None:
        seconds = result.get("time_this_iter_s") or 0.0
    if not on_gpu:
        return float(seconds)
    share = result.get("gpu_share")
    return float(seconds) * float(share if share else default_share)


class Ledger:
    """The compute a method spent, shared by its stopper and its callback."""

    def __init__(self, budget: float, on_gpu: bool = False, default_share: float = 0.0):
        self.budget, self.on_gpu, self.default_share = float(budget), on_gpu, default_share
        self.spent = 0.0
        self.waiting: set[str] | None = None  # trials running when the budget was reached, yet to report
        self.trials = []  # Tune's live trial list (the callback's), not pickled

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def __getstate__(self):
        return {**self.__dict__, "trials": []}


class BudgetStopper(tune.Stopper):
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def __call__(self, trial_id: str, result: dict) -> bool:
        ledger = self.ledger
        if ledger.waiting is None:  # this epoch was trained within the budget (or crossed it): it counts
            ledger.spent += epoch_cost(result, ledger.on_gpu, ledger.default_share)
            if not ledger.exhausted:
                return False
            ledger.waiting = {t.trial_id for t in ledger.trials if t.status == "RUNNING"} - {trial_id}
            return True
        ledger.spent += epoch_cost(result, ledger.on_gpu, ledger.default_share)  # its next epoch: counted, its last
        ledger.waiting.discard(trial_id)
        return True

    def stop_all(self) -> bool:
        ledger = self.ledger
        if ledger.exhausted and ledger.waiting is None:  # resumed with the budget spent
            return True
        return ledger.waiting is not None and not ledger.waiting


class BudgetWatch(tune.Callback):
    """Which trials run (for the stopper), a trial that ends otherwise is no longer waited for, and the
    spent compute in Tune's snapshots (get_state/set_state, as experiments.callbacks.SchedulerState)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def on_step_begin(self, iteration, trials, **info):
        self.ledger.trials = trials

    def _ended(self, trial):
        if self.ledger.waiting is not None:
            self.ledger.waiting.discard(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial)

    def get_state(self) -> dict:
        return {"spent": self.ledger.spent}

    def set_state(self, state: dict) -> None:
        # resumed: what was spent before counts; trials that were waiting were ended by the interruption
        self.ledger.spent = state["spent"]
        self.ledger.waiting = None


def budget_hooks(budget: float, on_gpu: bool, default_share: float) -> tuple[BudgetStopper, BudgetWatch]:
    """The stopper and the callback of one method's budget, sharing one Ledger."""
    ledger = Ledger(budget, on_gpu, default_share)
    return BudgetStopper(ledger), BudgetWatch(ledger)
