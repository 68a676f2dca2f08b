"""Fidelity sanity of a replay table: does the value at each ASHA rung say anything about the
value a configuration reaches at the end of its curve?

A multi-fidelity verdict is only about the searchers when the early rungs carry information.
LCBench's first surrogate epoch is the untrained network (YAHPO Gym's FAQ); with it as ASHA's
first rung the rank correlation with the final value was 0.16 over 34 data sets, and every ASHA
number measured on those tables was about a broken first rung. So every table a replay reads is
checked, and a table whose first rung is uninformative is flagged loudly in the report.

Per rung (ASHA's rungs of the table: grace period x reduction factor^k below the longest curve):
- ``spearman``: Spearman's rank correlation, over the configurations whose curve reaches the rung,
  between the metric at the rung (what ASHA compares) and the curve's best (what a trial that
  trains on keeps); training seeds are averaged first;
- ``best_rank`` and ``best_survives``: the grid's best configuration's rank at the rung, and
  whether it is in the top 1/reduction factor there (the cut applied to the whole grid).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from experiments.replay.table import Table

# Declared before the rebuilt LCBench tables were built or looked at, between the two means the
# issue measured (0.16 on the untrained first epoch, 0.72 one epoch later), not tuned on any
# table: below it a rung orders configurations too weakly for a cut there to be about the searcher.
FIRST_RUNG_MIN_SPEARMAN = 0.5
COLUMNS = ["rung", "n_configs", "spearman", "best_rank", "keep", "best_survives"]


def rungs(table: Table) -> list[int]:
    """ASHA's rungs on this table, in epochs (Ray's: grace x eta^k, below max_t)."""
    longest = max(len(curves[0].epoch_seconds) for curves in table.curves.values())
    out, rung = [], table.grace_period
    while rung < longest:
        out.append(rung)
        rung *= table.reduction_factor
    return out


def fidelity(table: Table) -> pd.DataFrame:
    """One row per rung (COLUMNS); empty where the table has no rung below its longest curve."""
    sign = 1.0 if table.mode == "max" else -1.0  # larger is better below
    keys = list(table.curves)
    mean_curves = [sign * np.mean([c.val[table.metric] for c in table.curves[k]], axis=0) for k in keys]
    final = np.array([curve.max() for curve in mean_curves])
    best = int(np.argmax(final))  # the grid's best (first of ties, in the table's order)
    rows = []
    for rung in rungs(table):
        reach = np.array([len(curve) >= rung for curve in mean_curves])
        at_rung = np.array([curve[rung - 1] if ok else np.nan for curve, ok in zip(mean_curves, reach)])
        n = int(reach.sum())
        rho = float(spearmanr(at_rung[reach], final[reach]).statistic) if n > 2 else float("nan")
        keep = max(1, n // table.reduction_factor)
        if reach[best]:
            rank = int((at_rung[reach] > at_rung[best]).sum()) + 1  # 1 = best at the rung; ties in its favour
            survives = rank <= keep
        else:
            rank, survives = None, None
        rows.append({"rung": rung, "n_configs": n, "spearman": rho, "best_rank": rank, "keep": keep,
                     "best_survives": survives})
    return pd.DataFrame(rows, columns=COLUMNS)


def first_rung_flagged(frame: pd.DataFrame) -> bool:
    """True where the first rung orders configurations too weakly (or not at all) to cut on."""
    if frame.empty:
        return False
    rho = frame["spearman"].iloc[0]
    return bool(np.isnan(rho) or rho < FIRST_RUNG_MIN_SPEARMAN)


def warning(names: list[str], total: int) -> str:
    """The report's loud line for tables whose first rung is uninformative ("" where none is)."""
    if not names:
        return ""
    return (f"**WARNING: on {len(names)} of {total} table(s) ASHA's first rung is uninformative** (Spearman "
            f"correlation of the rung's value with the curve's best below {FIRST_RUNG_MIN_SPEARMAN}, declared in "
            f"advance): {', '.join(names)}. A verdict about ASHA methods there says more about the table's early "
            "epochs than about the searchers.")


def markdown(frame: pd.DataFrame, label: str = "") -> list[str]:
    """A rung-by-rung table (and the warning) for one table's replay summary."""
    lines = [f"Fidelity sanity{label}: does ASHA's rung value predict the curve's best? (Spearman over the grid; "
             "whether the grid's best is in the top 1/eta at the rung)", "",
             "| rung (epochs) | configurations | Spearman | grid best's rank | kept | grid best survives |",
             "|---|---|---|---|---|---|"]
    for row in frame.to_dict("records"):
        rank = "-" if pd.isna(row["best_rank"]) else int(row["best_rank"])
        survives = "-" if pd.isna(row["best_survives"]) else ("yes" if row["best_survives"] else "no")
        lines.append(f"| {row['rung']} | {row['n_configs']} | {row['spearman']:.2f} | {rank} | {row['keep']} | {survives} |")
    if first_rung_flagged(frame):
        lines += ["", warning(["this table"], 1)]
    return lines


def fidelity_lines(frame: pd.DataFrame) -> list[str]:
    """Per rung over the tables: mean [min, max] Spearman and how often the grid's best survives
    the cut; then the tables whose first rung is flagged (experiments.replay.fidelity)."""
    tasks = list(dict.fromkeys(frame["task"]))
    lines = [f"Fidelity sanity over {len(tasks)} table(s) (Spearman of the rung's value with the curve's best; "
             "the grid's best in the top 1/eta at the rung):", "",
             "| rung (epochs) | Spearman mean [min, max] | tables below the threshold | grid best survives |",
             "|---|---|---|---|"]
    for rung, rows in frame.groupby("rung", sort=True):
        rho = rows["spearman"]
        survives = rows["best_survives"].astype("boolean")
        lines.append(f"| {rung} | {rho.mean():.2f} [{rho.min():.2f}, {rho.max():.2f}] | "
                     f"{int((rho < FIRST_RUNG_MIN_SPEARMAN).sum())} of {len(rows)} | "
                     f"{int(survives.sum())} of {int(survives.notna().sum())} |")
    flagged = [t for t, rows in frame.groupby("task", sort=False) if first_rung_flagged(rows.sort_values("rung"))]
    lines += ["", warning(flagged, len(tasks)) or
              f"The first rung's correlation is at least {FIRST_RUNG_MIN_SPEARMAN} (declared in advance) "
              "on every table."]
    return lines
