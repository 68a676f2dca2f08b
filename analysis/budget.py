"""A --time-budget run compared at equal compute: each method's best validation value once it had
spent each share of the grid's estimated compute that is within the budget, and at the budget
(experiments.budget counts compute: each epoch's seconds x its trial's GPU share on a GPU, else x 1)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core import records
from core.rules import COMPUTE_FRACTIONS, epoch_compute, method_label


def compute_points(info: dict) -> list[tuple[str, float]]:
    """(label, compute) of the columns: the suite's shares of the grid's estimated compute below the
    budget, then the method's end (the budget, and the next epoch of the trials running then: its pick)."""
    budget = info.get("resolved", {}).get("time_budget_s")
    grid = (info.get("estimate") or {}).get("grid_compute")
    points = [(f"{f * 100:g}% of the grid", f * grid) for f in COMPUTE_FRACTIONS if grid and f * grid < budget]
    return points + [("the end", math.inf)]


def best_at(curves: pd.DataFrame, trials: pd.DataFrame, objective, on_gpu: bool, points: list[float],
            default_share: float = 0.0) -> pd.DataFrame:
    """Per method and seed, the best validation value among the epochs reported by each compute point
    (in the order the epochs ended); NaN before the first epoch."""
    trial_rows = trials.to_dict("records")
    rows = []
    for key, frame in curves.sort_values("wall_seconds").groupby(list(records.METHOD_COLUMNS), sort=False):
        spent = np.cumsum(epoch_compute(frame.to_dict("records"), trial_rows, on_gpu, default_share))
        values = frame[objective.metric].to_numpy(dtype=float)
        best = np.fmax.accumulate(values) if objective.mode == "max" else np.fmin.accumulate(values)
        row = dict(zip(records.METHOD_COLUMNS, key))
        for i, point in enumerate(points):
            n = int(np.searchsorted(spent, point + 1e-9, side="right"))
            row[i] = best[n - 1] if n else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def in_run_order(frame: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows in summary.csv's order (the order the methods ran)."""
    order = {tuple(k): i for i, k in enumerate(summary[["searcher", "scheduler", "seed"]].itertuples(index=False))}
    keys = [order.get((r.searcher, r.scheduler, r.seed), len(order)) for r in frame.itertuples()]
    return frame.assign(_order=keys).sort_values("_order", kind="stable").drop(columns="_order")


def equal_compute_markdown(run) -> str:
    """summary.md's section for a --time-budget run ("" for a run without one)."""
    info = run.info
    if not info.get("resolved", {}).get("time_budget_s") or not len(run.curves):
        return ""
    objective = run.objective
    on_gpu = info["resolved"].get("compute_unit") == "gpu_seconds"
    points = compute_points(info)
    share = float(info["resolved"].get("resources", {}).get("gpu") or 0.0)
    best = in_run_order(best_at(run.curves, run.trials, objective, on_gpu, [p for _, p in points], share), run.summary)
    unit = "GPU-seconds" if on_gpu else "trial-seconds"
    summary = run.summary.set_index(["searcher", "scheduler", "seed"])
    header = ["method", "seed", f"spent ({unit})"] + [f"{objective.metric} at {label}" + (f" ({p:.3g})" if p < math.inf
                                                                                        else "") for label, p in points]
    header.append(objective.test_column + " of the pick")
    lines = [f"## At equal compute: {info['resolved']['time_budget_s']:g} {unit} each", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in best.iterrows():
        mine = summary.loc[(row["searcher"], row["scheduler"], row["seed"])]
        cells = [method_label(row["searcher"], row["scheduler"]), str(row["seed"]), f"{mine['compute_spent']:.3g}"]
        cells += ["-" if pd.isna(row[i]) else f"{row[i]:.4f}" for i in range(len(points))]
        test = mine.get(objective.test_column)
        cells.append("-" if test is None or pd.isna(test) else f"{test:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    estimate = info.get("estimate") or {}
    lines += ["", f"Each method could spend {info['resolved']['time_budget_s']:g} {unit}; when it had, its running trials "
              "ended at their next epoch (counted) and nothing else was trained, so spent exceeds the budget by at most "
              "one epoch of each trial running then. The shares are of the grid's compute estimated before the run "
              f"({estimate.get('grid_compute', float('nan')):.3g} {unit}, "
              f"{'one epoch per memory class measured' if estimate.get('measured') else 'declared epoch costs'}), the "
              "shares the LCBench suite and the replay report; a value is the best validation value among the epochs "
              "that had ended by then.", ""]
    return "\n".join(lines)
