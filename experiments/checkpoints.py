"""Checkpoints that can no longer be selected are deleted as soon as that is known.

A checkpoint holds one model's best-validation weights (``trainables.base``); what needs one
is scoring a method's pick on the test split, and the user who wants the tuned model. A full
IMDB run keeps 70+ DistilBERT trials (about 260 MB each), more than many GPU boxes have free,
so ``--keep-checkpoints`` (default ``best``) decides what stays:

- ``best``: within a method only the trial that ``core.rules.select_trial`` would pick so far
  keeps its checkpoint (Tune's ``on_trial_complete`` arrives after the final checkpoint is
  registered); after a method is scored, only the run's best pick so far keeps its own. At any
  moment at most three are on disk (the run's best, the method's incumbent, the trial just
  finished), and one when the run ends.
- ``picks``: every method's pick keeps its checkpoint (one per method and seed at the end).
- ``all``: nothing is deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ray import tune

from core.records import STATE_FILES
from core.rules import Objective, method_name, selection_key
from experiments.tune_adapter import best_reported


def default_pause_disk_gb(folder: Path) -> float:
    """The disk paused trials' states may take when --pause-disk-gb is not given: a quarter of what is
    free where the run folder lives, at most 20 GB (a laptop's spare; ~25 paused DistilBERT trials)."""
    return round(min(20.0, shutil.disk_usage(folder).free / 4 / 2**30), 2)


def delete(checkpoint) -> None:
    """Remove a Tune ``Checkpoint``'s folder, on whatever file system it lives (local or pyarrow's)."""
    if checkpoint is not None:
        checkpoint.filesystem.delete_dir(checkpoint.path)


class DropTrainingState(tune.Callback):
    """A paused trial's checkpoint holds its training state (trainables.state, ~4x the weights). When
    the trial ends for good while paused (the scheduler stops it) that state can never be used:
    it goes at once, and the weights stay for KeepSelectable (next in the callbacks) to judge."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._drop(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._drop(trial)

    @staticmethod
    def _drop(trial) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            return
        from pyarrow.fs import FileType

        for name in STATE_FILES:
            path = f"{checkpoint.path}/{name}"
            if checkpoint.filesystem.get_file_info(path).type == FileType.File:
                checkpoint.filesystem.delete_file(path)


def _key(trial, order: int, objective: Objective) -> tuple | None:
    """The trial's selection key (core.rules) from what Tune holds of it: its own running best
    where the trainable reports one (ours do), else the best value of the metric Tune saw."""
    result = trial.last_result or {}
    best = result.get(objective.best_column, best_reported(trial, objective))
    epoch = result.get("epoch")
    if best is None or epoch is None:
        return None
    return selection_key(float(best), int(epoch), order, objective)


class KeepSelectable(tune.Callback):
    """Deletes each finished trial's checkpoint unless it is the method's pick so far; the
    state (the incumbent) travels in Tune's snapshots, so a resumed method goes on the same."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.incumbent: tuple | None = None  # (selection key, trial id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        key = _key(trial, trials.index(trial), self.objective)
        if key is None:
            delete(trial.checkpoint)
            return
        if self.incumbent is not None and key <= self.incumbent[0]:
            delete(trial.checkpoint)
            return
        if self.incumbent is not None:
            loser = next((t for t in trials if t.trial_id == self.incumbent[1]), None)
            delete(loser.checkpoint if loser is not None else None)
        self.incumbent = (key, trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        delete(trial.checkpoint)  # a failed trial is never picked

    def get_state(self) -> dict:
        return {"incumbent": self.incumbent}

    def set_state(self, state: dict) -> None:
        self.incumbent = state["incumbent"]


def keep_best_pick(run_dir: Path, summaries: list, objective: Objective) -> None:
    """Delete the checkpoints of every scored pick but the run's best (best validation value in
    the objective's direction; a tie goes to the earlier method): called after each method is
    scored, from the summary rows alone, so a resumed run prunes the same. Local run folders only."""
    picks = [s for s in summaries if s.get("best_trial_id") not in (None, "")]
    if len(picks) < 2:
        return
    best = max(range(len(picks)), key=lambda i: (objective.signed(float(picks[i][objective.best_column])), -i))
    for i, row in enumerate(picks):
        if i != best:
            trial = Path(run_dir) / "tune" / method_name(row["searcher"], row["scheduler"], int(row["seed"]))
            for folder in (trial / f"trial_{row['best_trial_id']}").glob("checkpoint_*"):
                shutil.rmtree(folder, ignore_errors=True)
