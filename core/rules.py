"""The rules that real runs and the replay benchmark must apply identically, one definition
each: what a task optimizes (its objective and direction), which epoch's weights a trial keeps,
which trial a method picks, which reports of a retried trial count, and what a method's folder
is called."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from core.records import FAILED


def method_label(searcher: str, scheduler: str) -> str:
    """A method as every table, report, plot and message shows it: ``grid:fifo``, the spelling
    ``--methods`` takes."""
    return f"{searcher}:{scheduler}"


def method_name(searcher: str, scheduler: str, seed: int) -> str:
    """The method's Tune folder under ``tune/``: ``<searcher>-<scheduler>-s<seed>`` (a folder name,
    so no colon; everything shown to a user spells the method with ``method_label``)."""
    return f"{searcher}-{scheduler}-s{seed}"


# --- the controls ------------------------------------------------------------------------------
# What every method is compared with, in real runs' summaries and in the replays: random search run
# to completion, and random search under ASHA (which tells the searcher's gain from the scheduler's).
CONTROLS = (("random", "fifo"), ("random", "asha"))


# --- a trial out of GPU memory ----------------------------------------------------------------
# What torch and our trainables put in an out-of-memory error's text (a Ray error carries its
# cause's traceback as text, so the names are what survives the trip to the driver).
OUT_OF_MEMORY_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "TrialOutOfMemory")


def is_out_of_memory(error) -> bool:
    """Whether ``error`` (an exception, Ray's wrapper of one, or an error file's text) is a GPU
    out-of-memory error."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


def oom_retry_share(share: float) -> float | None:
    """The GPU share a trial that ran out of memory at ``share`` is re-queued with: the whole card
    (it then trains alone), once. None where it had the whole card already, or no GPU: it is never
    re-queued with the share it failed at (next to the same trials it would fail the same way)."""
    return 1.0 if 0 < share < 1 else None


# --- the precision a card trains in -------------------------------------------------------------
def training_precision(compute_capability: tuple[int, int] | None) -> str:
    """``bf16`` where the card computes bfloat16 natively (compute capability 8.0 and later: Ampere,
    Hopper, ...), ``fp16`` with a gradient scaler on older cards (V100, T4, the pre-Ampere 24 GB
    cards, where bf16 is emulated, slowly, or refused), ``fp32`` on the CPU (None). Trials and
    run.json apply the same rule (the trial from torch, run.json from NVML, before any CUDA context)."""
    if compute_capability is None:
        return "fp32"
    return "bf16" if tuple(compute_capability) >= (8, 0) else "fp16"


# --- the task's objective -----------------------------------------------------------------------
# Metrics whose values are fractions (0..1) that regret is quoted in points (x100) of; any other
# metric's regret is in its own units (an RMSE's regret is in the target's units).
POINT_METRICS = ("accuracy", "balanced_accuracy", "f1", "auc")


@dataclass(frozen=True)
class Objective:
    """What a task optimizes: a validation metric (``val_<name>``, as its trials report it) and
    its direction. Every rule below ranks by it, so a loss or an RMSE (``min``) is handled by
    the same code as an accuracy (``max``)."""

    metric: str = "val_accuracy"
    mode: str = "max"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    def signed(self, value: float) -> float:
        """``value`` turned so that larger is better (the metric itself for max, its negative for min)."""
        return value if self.mode == "max" else -value

    def is_better(self, value: float, than: float | None) -> bool:
        """Strictly better than ``than`` (None: nothing yet, so any value is)."""
        return than is None or self.signed(value) > self.signed(than)

    def best(self, values: Iterable[float]) -> float:
        return (max if self.mode == "max" else min)(values)

    @property
    def name(self) -> str:
        """The metric without its split: ``accuracy`` for ``val_accuracy``."""
        return self.metric.removeprefix("val_")

    @property
    def best_column(self) -> str:
        """trials.csv's and summary.csv's column of a trial's best value: ``best_val_accuracy``."""
        return f"best_{self.metric}"

    @property
    def final_column(self) -> str:
        return f"final_{self.metric}"

    @property
    def test_column(self) -> str:
        """The same metric on the test split: ``test_accuracy``."""
        return f"test_{self.name}"

    @property
    def regret_unit(self) -> str:
        """``pts`` (points: x100) for a fraction metric (POINT_METRICS), else the metric's name."""
        return "pts" if self.name in POINT_METRICS else self.name

    @property
    def regret_scale(self) -> float:
        """What a difference of the metric is multiplied by to be in ``regret_unit`` (100 for points)."""
        return 100.0 if self.regret_unit == "pts" else 1.0

    @property
    def regret_words(self) -> str:
        """``regret_unit`` in words, for reports and plots: "accuracy points", "rmse units"."""
        return f"{self.name} points" if self.regret_unit == "pts" else f"{self.name} units"

    def regret(self, reference, value):
        """How much worse ``value`` is than ``reference``, in ``regret_unit`` (0: as good; works on arrays)."""
        return self.regret_scale * (self.signed(reference) - self.signed(value))


# --- a trial's best epoch -------------------------------------------------------------------
def best_epochs(values: Sequence[float], objective: Objective) -> list[int]:
    """best_epochs[e-1]: the epoch (1-based) whose weights a trial that trained e epochs keeps:
    the first of its best epochs (a later epoch replaces the kept weights only if strictly better)."""
    kept, best, out = 0, None, []
    for epoch, value in enumerate(values, start=1):
        if objective.is_better(value, best):
            kept, best = epoch, value
        out.append(kept)
    return out


# --- a method's pick --------------------------------------------------------------------------
def selection_key(best_value: float, epochs: int, order: int, objective: Objective) -> tuple:
    """How trials rank for a method's pick: best validation value (in the objective's direction);
    ties go to the trial trained longest, then to the one started first (``order``: 0 for the first)."""
    return objective.signed(best_value), epochs, -order


def select_trial(trials: Iterable[dict], objective: Objective) -> dict | None:
    """The method's pick among trial rows (``status``, the objective's ``best_*`` column,
    ``epochs``, in start order); failed trials and trials that reported nothing are never picked."""
    column = objective.best_column
    candidates = [(i, t) for i, t in enumerate(trials)
                  if t["status"] != FAILED and t[column] is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda it: selection_key(it[1][column], it[1]["epochs"], it[0], objective))[1]


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


# The shares of the grid's compute at which methods are compared at equal compute: the LCBench
# suite's columns (experiments.replay.suite), the recommendation table's rows (experiments.recommend)
# and a --time-budget run's equal-compute section (analysis.budget).
COMPUTE_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.10, 0.25)


def epoch_compute(curves, trials, on_gpu: bool, default_share: float) -> list[float]:
    """Each curves.csv row's compute, as --time-budget counts it (experiments.budget): its epoch_seconds
    x its trial's GPU share on a GPU (the run's share where the trial recorded none), x 1 on the CPU.
    The one rule behind summary.csv's compute_spent, the equal-compute section and TensorBoard's runs."""
    def number(value, missing):  # None, or NaN in a row read back from a CSV: missing
        return missing if value is None or value != value else value

    share = {t.get("trial_id"): number(t.get("gpu_share"), default_share) or default_share for t in trials} if on_gpu \
        else {}
    return [number(c.get("epoch_seconds"), 0.0) * (share.get(c.get("trial_id"), default_share) if on_gpu else 1.0)
            for c in curves]
