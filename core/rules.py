"""The rules that real runs and the replay benchmark must apply identically, one definition
each: which epoch's weights a trial keeps, which trial a method picks, which reports of a
retried trial count, and what a method's folder is called."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from core.records import FAILED


def method_name(searcher: str, scheduler: str, seed: int) -> str:
    """The method's Tune folder under ``tune/``: ``<searcher>-<scheduler>-s<seed>``."""
    return f"{searcher}-{scheduler}-s{seed}"


# --- the controls ------------------------------------------------------------------------------
# What every method is compared with, in real runs' summaries and in the replays: random search run
# to completion, and random search under ASHA (which tells the searcher's gain from the scheduler's).
CONTROLS = (("random", "fifo"), ("random", "asha"))


# --- a trial's best epoch -------------------------------------------------------------------
def is_new_best(value: float, best_so_far: float) -> bool:
    """Whether an epoch's validation accuracy replaces the kept weights: strictly higher only,
    so of equal epochs the first is kept (a trial keeps the earliest of its best epochs)."""
    return value > best_so_far


def best_epochs(val_accuracy: Sequence[float]) -> list[int]:
    """best_epochs[e-1]: the epoch (1-based) whose weights a trial that trained e epochs keeps."""
    kept, best, out = 0, -math.inf, []
    for epoch, value in enumerate(val_accuracy, start=1):
        if is_new_best(value, best):
            kept, best = epoch, value
        out.append(kept)
    return out


# --- a method's pick --------------------------------------------------------------------------
def selection_key(best_val_accuracy: float, epochs: int, order: int) -> tuple:
    """How trials rank for a method's pick: highest best validation accuracy; ties go to the
    trial trained longest, then to the one started first (``order``: 0 for the first)."""
    return best_val_accuracy, epochs, -order


def select_trial(trials: Iterable[dict]) -> dict | None:
    """The method's pick among trial rows (``status``, ``best_val_accuracy``, ``epochs``, in
    start order); failed trials and trials that reported nothing are never picked."""
    candidates = [(i, t) for i, t in enumerate(trials)
                  if t["status"] != FAILED and t["best_val_accuracy"] is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda it: selection_key(it[1]["best_val_accuracy"], it[1]["epochs"], it[0]))[1]


# --- the reports of a trial ---------------------------------------------------------------------
def epoch_of(report: dict) -> int | None:
    """A report's epoch as an int; None for a report without one (Tune's own bookkeeping
    rows, a trial that failed before reporting), which no rule may count as an epoch."""
    value = report.get("epoch")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) else None


def last_attempt(reports: list[dict]) -> list[dict]:
    """The epoch reports of a trial's last attempt: a trial retried after a failure, or
    restarted on resume, starts again at epoch 1 and Tune appends its reports to the earlier
    ones. Reports without an epoch are dropped."""
    reports = [r for r in reports if epoch_of(r) is not None]
    start = 0
    for i in range(1, len(reports)):
        if epoch_of(reports[i]) <= epoch_of(reports[i - 1]):
            start = i
    return reports[start:]
