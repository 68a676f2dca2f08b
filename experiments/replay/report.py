"""What a replay writes: summary.csv and summary.md, seeds.csv, anytime.csv, the anytime
regret plot and replay.json."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core import records
from core.rules import method_label
from experiments.replay import fidelity
from experiments.replay.stats import (CONTROLS, READING_NOTES, REACH_POINTS, REGRET_FRACTIONS, anytime_curves,
                                      regret_column, summarize, summary_columns)
from experiments.replay.table import Table


def _plot_anytime(anytime: pd.DataFrame, table: Table, path: Path) -> None:
    """One panel per scheduler: each searcher's median regret with its interquartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedulers = list(dict.fromkeys(anytime["scheduler"]))
    fig, axes = plt.subplots(1, len(schedulers), figsize=(6 * len(schedulers), 4.5), sharey=True, squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(anytime["searcher"]))}
    objective = table.objective
    regret = f"regret_{objective.regret_unit}"
    for ax, scheduler in zip(axes[0], schedulers):
        for searcher, frame in anytime[anytime["scheduler"] == scheduler].groupby("searcher", sort=False):
            stats = frame.groupby("compute_fraction")[regret].quantile([0.25, 0.5, 0.75]).unstack()
            ax.step(stats.index * 100, stats[0.5], where="post", color=colors[searcher], label=searcher)
            ax.fill_between(stats.index * 100, stats[0.25], stats[0.75], step="post", color=colors[searcher],
                            alpha=0.12)
        ax.axhline(REACH_POINTS, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("compute used, % of the grid's")
        ax.set_title(f"scheduler: {scheduler}")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"regret to the grid's best {objective.metric} ({objective.regret_words})")
    fig.suptitle("Anytime regret: median and interquartile band over replay seeds")
    fig.tight_layout()
    records.write_figure(fig, path, dpi=120)
    plt.close(fig)


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def _test_cell(row: dict, prefix: str) -> str:
    at = f"{prefix}_at_10pct"
    if pd.isna(row[f"{at}_p"]):
        return "-"
    return f"{_fmt(row[f'{at}_diff_median'])}, p={_fmt(row[f'{at}_p'], 3)}, r={_fmt(row[f'{at}_r'])}"


def summary_markdown(summary: pd.DataFrame, table: Table, settings: dict, sanity: pd.DataFrame | None = None) -> str:
    objective = table.objective
    test, unit = objective.test_column, objective.regret_unit
    lines = [f"# Replay of {table.task}: {settings['n_seeds']} seeds per method", "",
             (f"Table: {table.source} ({len(table.curves)} configurations, "
             f"{len(next(iter(table.curves.values())))} training seed(s)); grid optimum {objective.metric} "
             f"{table.optimum:.4f}; grid compute {table.grid_compute:.1f} s; concurrency {settings['max_concurrent']}; "
             f"{settings['num_samples']} trials per sampling searcher; ASHA grace period {table.grace_period} epochs, "
              f"reduction factor {table.reduction_factor}. Regret in {objective.regret_words}; compute as a share "
             "of the grid's."), "",
             ("| method | regret @5% | @10% | @25% | @50% | compute to within 0.5 (median) | seeds reaching | "
             f"compute used | {test} (median) | vs grid test ({unit}) | @10% vs random:fifo: diff, p, r | "
              "@10% vs random:asha: diff, p, r |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary.to_dict("records"):
        regrets = [f"{_fmt(row[f'{regret_column(table, f)}_median'])} "
                   f"[{_fmt(row[f'{regret_column(table, f)}_q25'])}, "
                   f"{_fmt(row[f'{regret_column(table, f)}_q75'])}]" for f in REGRET_FRACTIONS]
        reach = row["compute_to_reach_median"]
        tests = " | ".join(_test_cell(row, prefix) for prefix in CONTROLS.values())
        lines.append(f"| {method_label(row['searcher'], row['scheduler'])} | " + " | ".join(regrets)
                     + f" | {_fmt(100 * reach, 1) + '%' if math.isfinite(reach) else 'never'}"
                     + f" | {_fmt(100 * row['reach_share'], 0)}% | {_fmt(100 * row['compute_share_median'], 1)}%"
                     + f" | {_fmt(row[f'{test}_median'], 4)} | {_fmt(row[f'{test}_vs_grid_{unit}'])} | {tests} |")
    grid_test = table.grid_selection_test()
    lines += ["", ("Regret cells: median [25th, 75th percentile] over seeds. The paired test is Wilcoxon's signed-rank "
              "test against each control (random:fifo; random:asha, which separates the searcher's effect from ASHA's) "
              "over the same seeds (two-sided); r is the matched-pairs rank-biserial correlation (negative: lower "
              "regret than the control)."),
              f"Grid's own selection {test}: {_fmt(grid_test, 4)}." if grid_test is not None else
              "The table has no test curves (record the grid with run_all.py --record-test-curves): test columns "
              "are empty.",
              "", *READING_NOTES, ""]
    if sanity is not None and len(sanity):
        lines += [*fidelity.markdown(sanity), ""]
    lines += ["![anytime regret](plots/anytime_regret.png)", ""]
    return "\n".join(lines)


def write_results(out: Path, table: Table, runs: list, seeds: pd.DataFrame, settings: dict) -> pd.DataFrame:
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    summary = summarize(seeds, table)
    anytime = anytime_curves(runs, table)
    records.write_csv(out / "seeds.csv", list(seeds.columns), seeds.to_dict("records"))
    records.write_csv(out / "summary.csv", summary_columns(table), summary.to_dict("records"))
    records.write_csv(out / "anytime.csv", list(anytime.columns), anytime.to_dict("records"))
    _plot_anytime(anytime, table, out / "plots" / "anytime_regret.png")
    sanity = fidelity.fidelity(table)  # every replayed table is checked, not only LCBench's
    records.write_csv(out / "fidelity.csv", list(sanity.columns), sanity.to_dict("records"))
    records.write_text(out / "summary.md", summary_markdown(summary, table, settings, sanity))
    records.write_json(out / "replay.json", {**settings, "grid_optimum": table.optimum,
                                             "grid_compute_seconds": table.grid_compute})
    return summary
