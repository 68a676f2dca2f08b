"""What the LCBench suite writes: seeds.csv, datasets.csv (with each table's first-rung fidelity),
summary.csv and summary.md, pairs.csv, fidelity.csv and the average-rank plot (the statistics
themselves are experiments.replay.suite's)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from core import records
from core.rules import method_label
from experiments.replay.fidelity import fidelity_lines
from experiments.replay.report import _fmt  # one cell format for every replay table
from experiments.replay.stats import ANYTIME_POINTS, CONTROLS, READING_NOTES, pct, summarize
from experiments.replay.suite import (FIDELITY_FILE, SUITE_FRACTIONS, TESTED_FRACTIONS, _fidelity_of, _table,
                                      average_rank, cross_dataset, normalized, pairwise)


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows.assign(method=rows["searcher"] + ":" + rows["scheduler"])
    ranks = average_rank(rows)
    norm = normalized(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    # matplotlib's default cycle repeats after 10 colors: more methods than that take tab20's 20
    palette = [f"C{i}" for i in range(10)] if len(ranks.index) <= 10 else list(plt.get_cmap("tab20").colors)
    for i, method in enumerate(ranks.index):
        color = palette[i % len(palette)]
        left.step(ANYTIME_POINTS * 100, ranks.loc[method].to_numpy(), where="post", color=color, label=method)
        mine = rows["method"] == method
        per_task = pd.DataFrame(norm[mine.to_numpy()]).groupby(rows.loc[mine, "task"].to_numpy()).median()
        q25, q50, q75 = (per_task.quantile(q).to_numpy() for q in (0.25, 0.5, 0.75))
        right.step(ANYTIME_POINTS * 100, q50, where="post", color=color, label=method)
        right.fill_between(ANYTIME_POINTS * 100, q25, q75, step="post", color=color, alpha=0.1)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("compute used, % of the grid's")
        ax.grid(alpha=0.3)
    left.set_ylabel("average rank (1 = best)")
    left.set_title("average rank over data sets and seeds")
    right.set_yscale("symlog", linthresh=0.01)
    right.set_ylabel("normalized regret (0 = grid best, 1 = grid median)")
    right.set_title("median over data sets, band: interquartile range")
    left.legend(fontsize=7)
    fig.tight_layout()
    records.write_figure(fig, path, dpi=110)
    plt.close(fig)


def _test_cell(p, r, wins, n) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"p={p:.3g}, r={r:.2f}, {int(wins)}/{int(n)}"


def ended_early(rows: pd.DataFrame, settings: dict) -> list[str]:
    """One line per method that did not spend the whole budget on some replays: its searcher ran
    out of configurations, or it hit the trial guard."""
    lines = []
    method = rows["searcher"] + ":" + rows["scheduler"]
    for name, frame in rows.groupby(method, sort=False):
        short = frame["compute_share"] < 0.999 * settings["budget"]
        capped = frame["n_trials"] >= settings["max_trials"]
        if short.any():
            lines.append(f"- {name}: {int(short.sum())} of {len(frame)} replays ended before {100 * settings['budget']:.0f}% "
                         f"(compute share median {100 * frame.loc[short, 'compute_share'].median():.1f}%, "
                         f"{int((short & capped).sum())} at the {settings['max_trials']}-trial guard, "
                         f"{int((short & ~capped).sum())} with the searcher out of configurations); its later columns "
                         "repeat its last pick")
    return lines


def half_line(settings: dict) -> str:
    half = settings.get("half")
    if half is None:
        return ("Tables: all of them. No setting reported here was chosen by looking at LCBench numbers (the grid, "
                "ASHA's settings and the fidelity threshold were declared first).")
    return (f"Tables: the {half} half ({settings['n_datasets']} tables, {half} index in the sorted task list); a setting "
            "chosen on LCBench is chosen on the even half and reported on the odd half.")


def markdown(cross: pd.DataFrame, settings: dict, pairs: pd.DataFrame | None = None, early: list[str] = (),
             fidelity: list[str] = ()) -> str:
    tested = [pct(f) for f in TESTED_FRACTIONS]
    lines = [f"# LCBench suite: {settings['n_datasets']} data sets x {settings['n_seeds']} seeds per method", "",
             half_line(settings), "",
             (f"Each method ran until it had spent {100 * settings['budget']:.0f}% of the grid's compute (or its "
              f"searcher ran out of configurations; trial guard {settings['max_trials']}); tables on LCBench epochs "
              "2..51 (the untrained epoch 1 dropped, YAHPO Gym's FAQ); concurrency "
              f"{settings['max_concurrent']}; ASHA grace period 1 epoch, reduction factor 3 (declared with the grid). "
              "Normalized regret: 0 = the grid's best, 1 = the grid's median configuration; mean [25th, 75th "
              "percentile] over data sets of the per-data-set median over seeds. Rank: 1 = best, averaged over "
              "data sets and seeds. Wilcoxon: signed-rank test across data sets (two-sided), r = rank-biserial "
              "effect size (negative: the method's regret is lower), wins = data sets where the method's median "
              "normalized regret is lower."), "",
             "| method | " + " | ".join(f"norm. regret @{pct(f)}%" for f in SUITE_FRACTIONS)
             + " | " + " | ".join(f"avg rank @{t}%" for t in tested) + " | "
             + " | ".join(f"vs {method_label(s, c)} @{t}%: p, r, wins" for s, c in CONTROLS for t in tested) + " |",
             "|---" * (1 + len(SUITE_FRACTIONS) + len(tested) + 2 * len(tested)) + "|"]
    for row in cross.to_dict("records"):
        cells = [f"{_fmt(row[f'norm_regret_at_{pct(f)}pct_mean'], 3)} "
                 f"[{_fmt(row[f'norm_regret_at_{pct(f)}pct_q25'], 3)}, "
                 f"{_fmt(row[f'norm_regret_at_{pct(f)}pct_q75'], 3)}]" for f in SUITE_FRACTIONS]
        ranks = [_fmt(row[f"avg_rank_at_{t}pct"]) for t in tested]
        tests = [_test_cell(row.get(f"{prefix}_at_{t}pct_p"), row.get(f"{prefix}_at_{t}pct_r"),
                            row.get(f"{prefix}_at_{t}pct_wins"), row.get(f"{prefix}_at_{t}pct_n"))
                 for prefix in CONTROLS.values() for t in tested]
        lines.append(f"| {row['method']} | " + " | ".join(cells + ranks + tests) + " |")
    if pairs is not None and len(pairs):
        lines += ["", "Named pairs (the same test, method against the other):", "",
                  "| method | against | " + " | ".join(f"@{t}%: p, r, wins/n (ties)" for t in tested) + " |",
                  "|---|---|" + "---|" * len(tested)]
        for row in pairs.to_dict("records"):
            cells = [_test_cell(row[f"p_at_{t}pct"], row[f"r_at_{t}pct"], row[f"wins_at_{t}pct"], row[f"n_at_{t}pct"])
                     + f" ({row[f'ties_at_{t}pct']})" for t in tested]
            lines.append(f"| {row['method']} | {row['against']} | " + " | ".join(cells) + " |")
    lines += ["", "Methods that could not spend the whole budget:" if early else
              f"Every method spent {100 * settings['budget']:.0f}% of the grid's compute in every replay.", *early]
    lines += ["", *fidelity, "", *READING_NOTES]
    lines += ["", "![average rank and normalized regret over compute](plots/lcbench_suite.png)", ""]
    return "\n".join(lines)


def write(out: Path, rows: pd.DataFrame, settings: dict) -> pd.DataFrame:
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    flat = rows.drop(columns=["anytime_regret_pts"])
    records.write_csv(out / "seeds.csv", list(flat.columns), flat.to_dict("records"))
    per_dataset = []
    for task, frame in rows.groupby("task"):
        summary = summarize(frame.drop(columns=["task", "anytime_regret_pts", "grid_median_regret_pts"]),
                            _table(settings["tables"] + "/" + task))
        per_dataset.append(summary.assign(task=task))
    per_dataset = pd.concat(per_dataset, ignore_index=True)
    tasks = list(dict.fromkeys(rows["task"]))
    sanity = _fidelity_of(Path(settings["tables"]), tasks)
    records.write_csv(out / FIDELITY_FILE, list(sanity.columns), sanity.to_dict("records"))
    first = sanity.sort_values("rung", kind="stable").drop_duplicates("task").set_index("task")
    per_dataset["first_rung_spearman"] = per_dataset["task"].map(first["spearman"])
    per_dataset["grid_best_survives_first_cut"] = per_dataset["task"].map(first["best_survives"])
    records.write_csv(out / "datasets.csv", list(per_dataset.columns), per_dataset.to_dict("records"))
    cross = cross_dataset(rows)
    records.write_csv(out / "summary.csv", list(cross.columns), cross.to_dict("records"))
    pairs = pairwise(rows)
    if len(pairs):
        records.write_csv(out / "pairs.csv", list(pairs.columns), pairs.to_dict("records"))
    plot(rows, out / "plots" / "lcbench_suite.png")
    records.write_text(out / "summary.md", markdown(cross, settings, pairs, ended_early(rows, settings),
                                                    fidelity_lines(sanity)))
    records.write_json(out / "suite.json", settings)
    return cross
