"""Statistics of replays over seeds: regret to the grid's best at shares of its compute, the
compute to come within REACH_POINTS, the pick's test value, and paired tests against the
controls (random search under fifo and under asha).

Regret is in the table's ``objective.regret_unit``: accuracy points (``regret_pts_*``) for an
accuracy, the metric's own units for anything else (``regret_rmse_*``); columns say which."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from analysis.stats import wilcoxon
from core import rules
from experiments.replay.table import Table

REGRET_FRACTIONS = (0.05, 0.10, 0.25, 0.50)  # shares of the grid's compute
REACH_POINTS = 0.5  # in the regret's unit: "within 0.5 points of the grid's best" for an accuracy
# The paired tests' controls (core.rules.CONTROLS) -> their column prefix; random:fifo keeps the
# prefix it always had.
CONTROLS = dict(zip(rules.CONTROLS, ("vs_random", "vs_random_asha")))
ANYTIME_POINTS = np.geomspace(0.005, 1.0, 120)  # compute fractions of the anytime curves


def pct(fraction: float) -> str:
    """A share of the grid's compute as its column names spell it: 0.005 -> '0.5', 0.1 -> '10'."""
    return f"{fraction * 100:g}"

# What looks self-contradictory in a replay's tables, and why it is not; summary.md says it.
READING_NOTES = (
    "Reading the numbers:",
    "- Regret can rise over compute: a pick is made on the one training seed its trial followed, but its regret is "
    "that configuration's value averaged over the grid's training seeds; a new pick that is better on its own seed "
    "can be worse on the average.",
    "- 'Seeds reaching' counts replays whose pick came within the threshold at any point; the regret percentiles "
    "are at one compute share. A replay that reached it and then moved to a pick worse on the average (above) "
    "counts in both, so 100% reaching can stand next to a 75th percentile above the threshold.",
    "- Wilcoxon's test drops tied pairs, and r (rank-biserial) is computed on the untied ones: with one or two "
    "untied pairs, all in one direction, r is -1 or 1 while p stays near 1 (too few pairs to say anything). Read "
    "r with its n and its wins.",
)


def regret_at(run, table: Table, fractions) -> np.ndarray:
    """Regret of the run's pick once it has used each fraction of the grid's compute. Before its
    first result there is nothing to pick: for ``max`` the regret of a value of 0 (for an accuracy,
    the whole optimum, as this benchmark always counted it), for ``min`` that of the grid's worst
    configuration (a loss or an RMSE has no natural worst value)."""
    compute = run.events["compute"].to_numpy()
    values = run.events["value"].to_numpy()
    budget = np.asarray(fractions, dtype=float) * table.grid_compute
    idx = np.searchsorted(compute, budget, side="right") - 1  # compute is non-decreasing
    nothing = 0.0 if table.objective.mode == "max" else table.worst_value
    value = np.where(idx >= 0, values[np.maximum(idx, 0)], nothing)
    return table.objective.regret(table.optimum, value)


def regret_column(table: Table, fraction: float) -> str:
    return f"regret_{table.objective.regret_unit}_at_{pct(fraction)}pct"


def compute_to_reach(run, table: Table, points: float = REACH_POINTS) -> float:
    """Share of the grid's compute the run used before its pick came within ``points``; inf if never."""
    regret = table.objective.regret(table.optimum, run.events["value"].to_numpy())
    hit = np.flatnonzero(regret <= points + 1e-9)
    return float(run.events["compute"].iloc[hit[0]] / table.grid_compute) if len(hit) else math.inf


def selected_test_value(run, table: Table) -> float | None:
    """The test value of the table's metric (test accuracy for val_accuracy) of the weights the
    run's pick keeps (its best-validation epoch)."""
    if run.selected is None or not table.has_test:
        return None
    curve = next(c for c in table.curves[run.selected["key"]] if c.seed == run.selected["training_seed"])
    return float(curve.test[table.objective.test_column][curve.best_epoch[run.selected["epochs"] - 1] - 1])


def seed_row(run, table: Table) -> dict:
    regrets = regret_at(run, table, REGRET_FRACTIONS)
    selected, objective = run.selected, table.objective
    return {
        "searcher": run.searcher, "scheduler": run.scheduler, "seed": run.seed,
        **{regret_column(table, f): r for f, r in zip(REGRET_FRACTIONS, regrets)},
        f"final_regret_{objective.regret_unit}": (objective.regret(table.optimum, run.events["value"].iloc[-1])
                                                  if len(run.events) else math.nan),
        "compute_to_reach": compute_to_reach(run, table),
        "compute_share": run.compute / table.grid_compute,
        "sim_seconds": run.sim_seconds,
        "n_trials": len(run.trials),
        "epochs_trained": sum(t["epochs"] for t in run.trials),
        "selected_config": json.dumps(table.config_of(selected["key"]), default=str) if selected else None,
        "selected_epochs": selected["epochs"] if selected else None,
        f"selected_{objective.metric}": selected[objective.best_column] if selected else None,
        objective.test_column: selected_test_value(run, table),
    }


def summary_columns(table: Table) -> tuple[str, ...]:
    """summary.csv's columns (for an accuracy: regret_pts_*, test_accuracy_median, ...)."""
    test, unit = table.objective.test_column, table.objective.regret_unit
    return (
        ("searcher", "scheduler", "n_seeds")
        + tuple(f"{regret_column(table, f)}_{s}" for f in REGRET_FRACTIONS for s in ("median", "q25", "q75"))
        + ("compute_to_reach_median", "reach_share", "compute_share_median", f"{test}_median",
           f"grid_{test}", f"{test}_vs_grid_{unit}")
        # against each control (CONTROLS): vs_random_* is random:fifo, vs_random_asha_* is random:asha
        + tuple(f"{prefix}_at_{pct(f)}pct_{s}" for prefix in CONTROLS.values() for f in REGRET_FRACTIONS
                for s in ("diff_median", "p", "r"))
    )


def summarize(seeds: pd.DataFrame, table: Table) -> pd.DataFrame:
    """One row per method from the per-seed rows (``seed_row``); see ``summary_columns``."""
    grid_test = table.grid_selection_test()
    test, unit = table.objective.test_column, table.objective.regret_unit
    controls = {prefix: seeds[(seeds["searcher"] == s) & (seeds["scheduler"] == c)].set_index("seed")
                for (s, c), prefix in CONTROLS.items()}
    rows = []
    for (searcher, scheduler), frame in seeds.groupby(["searcher", "scheduler"], sort=False):
        row = {"searcher": searcher, "scheduler": scheduler, "n_seeds": len(frame)}
        for f in REGRET_FRACTIONS:
            column = regret_column(table, f)
            q25, median, q75 = np.percentile(frame[column], [25, 50, 75])
            row.update({f"{column}_median": median, f"{column}_q25": q25, f"{column}_q75": q75})
            for control, prefix in CONTROLS.items():
                reference = controls[prefix]
                if not len(reference) or (searcher, scheduler) == control:
                    continue
                paired = frame.set_index("seed")[column].align(reference[column], join="inner")
                p, r = wilcoxon(*paired)
                at = f"{prefix}_at_{pct(f)}pct"
                row.update({f"{at}_diff_median": float(np.median(paired[0] - paired[1])), f"{at}_p": p, f"{at}_r": r})
        reach = frame["compute_to_reach"].to_numpy()
        row["compute_to_reach_median"] = float(np.median(reach))  # inf where most seeds never get there
        row["reach_share"] = float(np.isfinite(reach).mean())
        row["compute_share_median"] = float(frame["compute_share"].median())
        if test in frame and frame[test].notna().any():
            row[f"{test}_median"] = float(frame[test].median())
            row[f"grid_{test}"] = grid_test
            # positive: the method's pick scores better on the test split than the grid's
            row[f"{test}_vs_grid_{unit}"] = -table.objective.regret(grid_test, row[f"{test}_median"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(summary_columns(table)))


def anytime_curves(runs, table: Table) -> pd.DataFrame:
    """Regret at ANYTIME_POINTS compute fractions, one row per run and point (column regret_pts
    for an accuracy; regret_<metric> otherwise)."""
    rows = []
    for run in runs:
        for f, r in zip(ANYTIME_POINTS, regret_at(run, table, ANYTIME_POINTS)):
            rows.append({"searcher": run.searcher, "scheduler": run.scheduler, "seed": run.seed,
                         "compute_fraction": f, f"regret_{table.objective.regret_unit}": r})
    return pd.DataFrame(rows)
