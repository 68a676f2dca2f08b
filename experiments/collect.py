"""trials.csv and curves.csv rows of one method, read from Tune's own per-trial results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core import records
from core.records import COMPLETED, DIVERGED, EVICTED, FAILED, OUT_OF_MEMORY, STOPPED
from core.rules import epoch_of, is_out_of_memory, last_attempt
from core.task import TaskSpec
from experiments.plan import Method
from experiments.tune_adapter import failure_texts, trial_gpu_share, trials_with_results


@dataclass(frozen=True)
class Collected:
    trials: tuple[dict, ...]  # trials.csv rows, in start order
    curves: tuple[dict, ...]  # curves.csv rows, in wall-clock order
    results: dict  # trial id -> Tune's Result (its checkpoint is what test scoring reads)


def number(value) -> float | None:
    """``value`` as a finite float; None for anything else (missing, NaN, inf, text)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def error_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def trial_status(reports: list[dict], error: Any, epochs: int, own_epochs: int) -> str:
    if error is not None:
        return OUT_OF_MEMORY if is_out_of_memory(error) else FAILED
    if any(r.get("task_error") for r in reports):  # the task's code broke its declaration: ended, not retried
        return FAILED
    if any(r.get("out_of_memory") is True for r in reports):  # alone on the card (EpochTrainable)
        return OUT_OF_MEMORY
    if any(r.get("diverged") is True for r in reports):
        return DIVERGED
    return STOPPED if epochs < own_epochs else COMPLETED


def collect_trials(results, task: TaskSpec, method: Method, started: float, evicted=frozenset()) -> Collected:
    """The rows of every trial of a ResultGrid. ``started``: when the method started
    (curves' ``wall_seconds`` count from it); ``evicted``: trials a pausing scheduler stopped for
    good for its disk budget."""
    identity = method.identity(task.name)
    columns = [c for c in records.curve_columns(task.metrics) if c.startswith(("val_", "test_"))] + ["epoch_seconds"]
    trials, curves, by_trial = [], [], {}
    for trial, result in trials_with_results(results):
        trial_id, config = trial.trial_id, trial.config
        frame = result.metrics_dataframe
        reports = last_attempt(frame.to_dict("records") if frame is not None and len(frame) else [])
        if not reports and result.error is None and trial.status == "TERMINATED":
            continue  # ended before its first epoch without an error: a --time-budget spent as it started
        epochs = max((epoch_of(r) for r in reports), default=0)
        objective = task.objective
        values = [r[objective.metric] for r in reports if number(r.get(objective.metric)) is not None]
        trials.append({
            **identity, "trial_id": trial_id,
            "status": EVICTED if trial_id in evicted else trial_status(reports, result.error, epochs,
                                                                       int(config[task.epochs_param])),
            **{f"config/{name}": config.get(name) for name in task.space},
            "epochs": epochs,
            objective.best_column: objective.best(values) if values else None,
            objective.final_column: values[-1] if values else None,
            "train_seconds": number(result.metrics.get("time_total_s")) or 0.0,
            "samples_per_second": (sum(r["samples_per_second"] for r in reports) / len(reports)
                                   if reports and all(number(r.get("samples_per_second")) for r in reports) else None),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in reports if number(r.get("peak_rss_mb"))), default=None),
            "peak_trial_gpu_mem_mb": max((r["peak_trial_gpu_mem_mb"] for r in reports
                                          if number(r.get("peak_trial_gpu_mem_mb")) is not None), default=None),
            "gpu_share": trial_gpu_share(trial),
            "oom_attempts": sum(map(is_out_of_memory, failure_texts(trial)))
            + any(r.get("out_of_memory") is True for r in reports),
            "node": next((r["node_id"] for r in reversed(reports) if r.get("node_id")), None),
            "error": (error_line(result.error) if result.error is not None
                      else next((r["task_error"] for r in reports if r.get("task_error")), "")),
        })
        by_trial[trial_id] = result
        for r in reports:
            curves.append({
                **identity, "trial_id": trial_id, "epoch": epoch_of(r),
                **{name: r.get(name) for name in columns},
                # our trainables stamp each epoch's end; Ray's own timestamp is whole seconds
                "wall_seconds": (number(r.get("end_time")) or r["timestamp"]) - started,
            })
    curves.sort(key=lambda c: (c["wall_seconds"], c["trial_id"], c["epoch"]))
    return Collected(tuple(trials), tuple(curves), by_trial)
