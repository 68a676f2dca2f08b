"""Checkpoints that can no longer be selected are deleted as soon as that is known.

A checkpoint holds one model's best-validation weights (``trainables.base``); what needs one
is scoring a method's pick on the test split, and the user who wants the tuned model. A full
IMDB run keeps 70+ DistilBERT trials (about 260 MB each), more than many GPU boxes have free,
so ``--keep-checkpoints`` (default ``best``) decides what stays:

- ``best``: within a method only the trials that ``core.rules.select_trial`` could pick so far
  keep their checkpoints (Tune's ``on_trial_complete`` arrives after the final checkpoint is
  registered): the best value at the most epochs, every trial tied there included; once the method
  is scored only its pick keeps its own, and then only the run's best pick so far. At any moment
  that is the run's best, the method's incumbents and the trial just finished, and one when the
  run ends.
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
    """Remove a Tune ``Checkpoint``'s folder, on whatever file system it lives (local or pyarrow's);
    one deleted already (Tune still names it) is left as it is."""
    from pyarrow.fs import FileType

    if checkpoint is not None and checkpoint.filesystem.get_file_info(checkpoint.path).type != FileType.NotFound:
        checkpoint.filesystem.delete_dir(checkpoint.path)


def keep_only_the_pick(results, pick_id) -> None:
    """After a method is scored: the checkpoint of every trial but its pick goes (``results``: trial
    id -> Tune Result). KeepSelectable keeps every trial tied with the incumbent; this drops the ties."""
    for trial_id, result in results.items():
        if trial_id != pick_id:
            delete(result.checkpoint)


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


def _key(trial, objective: Objective) -> tuple | None:
    """The trial's selection key (core.rules) from what Tune holds of it, without the start order:
    its own running best where the trainable reports one (ours do), else the best value of the
    metric Tune saw, and its epochs."""
    result = trial.last_result or {}
    best = result.get(objective.best_column, best_reported(trial, objective))
    epoch = result.get("epoch")
    if best is None or epoch is None:
        return None
    return selection_key(float(best), int(epoch), 0, objective)


class KeepSelectable(tune.Callback):
    """Deletes each finished trial's checkpoint unless it could be the method's pick so far: the best
    value at the most epochs, ties kept. select_trial breaks a tie by the order Tune created the trials
    (tune_adapter.trials_with_results); this callback does not break it a second time, in another
    order (Tune's live trial list is in snapshot order after a resume): that once deleted the pick's
    weights, as a repeated configuration ties exactly. keep_only_the_pick drops the ties once the
    pick is scored. The state (the incumbents) travels in Tune's snapshots, so a resumed method goes
    on the same."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.incumbents: dict[str, tuple] = {}  # trial id -> selection key; all keys equal

    def on_trial_complete(self, iteration, trials, trial, **info):
        key = _key(trial, self.objective)
        best = next(iter(self.incumbents.values()), None)
        if key is None or (best is not None and key < best):
            delete(trial.checkpoint)
            return
        if best is not None and key > best:
            for loser in trials:
                if loser.trial_id in self.incumbents:
                    delete(loser.checkpoint)
            self.incumbents = {}
        self.incumbents[trial.trial_id] = key

    def on_trial_error(self, iteration, trials, trial, **info):
        delete(trial.checkpoint)  # a failed trial is never picked

    def get_state(self) -> dict:
        return {"incumbents": self.incumbents}

    def set_state(self, state: dict) -> None:
        if "incumbent" in state:  # a snapshot written before ties were kept: (key with order, trial id)
            old = state["incumbent"]
            self.incumbents = {} if old is None else {old[1]: (*old[0][:2], 0)}
        else:
            self.incumbents = dict(state["incumbents"])


def keep_best_pick(run_dir: Path, summaries: list, objective: Objective, keep: tuple[str, ...] = ()) -> None:
    """Delete the checkpoints of every scored pick but the run's best (best validation value in
    the objective's direction; a tie goes to the earlier method) and those of the methods in ``keep``
    ("searcher:scheduler": the recommended method, whose weights the run offers): called after each
    method is scored, from the summary rows alone, so a resumed run prunes the same. Local run folders only."""
    picks = [s for s in summaries if s.get("best_trial_id") not in (None, "")]
    if len(picks) < 2:
        return
    best = max(range(len(picks)), key=lambda i: (objective.signed(float(picks[i][objective.best_column])), -i))
    for i, row in enumerate(picks):
        if i != best and f"{row['searcher']}:{row['scheduler']}" not in keep:
            trial = Path(run_dir) / "tune" / method_name(row["searcher"], row["scheduler"], int(row["seed"]))
            for folder in (trial / f"trial_{row['best_trial_id']}").glob("checkpoint_*"):
                shutil.rmtree(folder, ignore_errors=True)
