"""A declared target checked on suite rows: is a method first or tied at every budget, and ahead of a
named one where the plan says so (docs/lcbench-freeze-thaw/PLAN.md states the rule this applies)?

    python -m experiments.replay.verdict FOLDER --method dpl:freeze_thaw --ahead-of bayesopt:fifo@1,2 \\
        [--with FOLDER ...] [--half odd] [--seeds 10]

Per budget (the suite's six shares), the method against every other method with all the data sets x seeds
asked for: Wilcoxon's signed-rank test paired by data set on the per-data-set median normalized regret
(as the suite's pairs), wins / losses / ties. "Behind": p < 0.05 with more losses than wins; "first or
tied": behind none. Writes ``verdict.md`` into FOLDER and prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.stats import wilcoxon
from core import records
from core.rules import COMPUTE_FRACTIONS
from experiments.replay.stats import pct

ALPHA = 0.05


def compare(rows: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per (other method, share): mean regrets, p, wins, losses, ties, and whether ``method`` is behind
    or ahead (p < ALPHA with more losses, or more wins)."""
    from experiments.replay.suite import per_dataset

    series = per_dataset(rows, COMPUTE_FRACTIONS)
    others = [m for m in dict.fromkeys(rows["searcher"] + ":" + rows["scheduler"]) if m != method]
    out = []
    for other in others:
        for f, medians in series.items():
            x, y = medians[method].align(medians[other], join="inner")
            p, _ = wilcoxon(x, y)
            wins, losses = int((x < y).sum()), int((x > y).sum())
            out.append({"against": other, "budget_pct": float(pct(f)), "mean": float(x.mean()),
                        "against_mean": float(y.mean()), "p": p, "wins": wins, "losses": losses,
                        "ties": int(len(x) - wins - losses), "n": int(len(x)),
                        "behind": bool(p < ALPHA and losses > wins), "ahead": bool(p < ALPHA and wins > losses)})
    return pd.DataFrame(out)


def verdict(rows: pd.DataFrame, method: str, ahead_of: dict[str, list[float]]) -> tuple[bool, list[str]]:
    """(met, the report's lines)."""
    table = compare(rows, method)
    n_tasks, n_seeds = rows["task"].nunique(), rows["seed"].nunique()
    lines = [f"# {method}: first or tied at every budget?", "",
             f"{n_tasks} data sets x {n_seeds} seeds; against {table['against'].nunique()} methods. Wilcoxon's "
             f"signed-rank test paired by data set (per-data-set median normalized regret over seeds, two-sided); "
             f"behind: p < {ALPHA} with more losses than wins.", "",
             "| budget | " + method + " mean | best other (mean) | behind | ahead of |", "|---|---|---|---|---|"]
    met = True
    for f in COMPUTE_FRACTIONS:
        at_f = table[table["budget_pct"] == float(pct(f))]
        best = at_f.loc[at_f["against_mean"].idxmin()]
        behind = at_f[at_f["behind"]]
        ahead = at_f[at_f["ahead"]]
        met &= behind.empty
        lines.append(f"| {pct(f)}% | {at_f['mean'].iloc[0]:.3f} | {best['against']} ({best['against_mean']:.3f}) | "
                     + (", ".join(f"{r.against} (p={r.p:.2g}, {r.wins}/{r.losses})" for r in behind.itertuples())
                        or "none") + f" | {len(ahead)} of {len(at_f)} |")
    lines += ["", "Named targets:"]
    for other, budgets in ahead_of.items():
        for b in budgets:
            row = table[(table["against"] == other) & (table["budget_pct"] == b)]
            if row.empty:
                lines.append(f"- ahead of {other} at {b:g}%: no rows of {other}")
                met = False
                continue
            r = row.iloc[0]
            met &= bool(r.ahead)
            lines.append(f"- ahead of {other} at {b:g}%: {'yes' if r.ahead else 'no'} (mean {r['mean']:.3f} against "
                         f"{r.against_mean:.3f}, p={r.p:.2g}, wins/losses/ties {r.wins}/{r.losses}/{r.ties})")
    lines += ["", f"Target {'met' if met else 'not met'}."]
    return met, lines


def main(argv=None) -> int:
    from experiments.replay.rows import read_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ahead-of", action="append", default=[], metavar="METHOD@PCT,PCT")
    parser.add_argument("--with", dest="with_rows", action="append", default=[])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)
    folders = [Path(args.folder), *map(Path, args.with_rows)]
    rows = pd.concat([pd.DataFrame(read_rows(f)) for f in folders], ignore_index=True)
    rows["task"] = rows["task"].astype(str)
    rows = rows.drop_duplicates(["task", "searcher", "scheduler", "seed"])
    mine = rows[(rows["searcher"] + ":" + rows["scheduler"]) == args.method]
    if mine.empty:
        print(f"python -m experiments.replay.verdict: error: no rows of {args.method} in {args.folder}", file=sys.stderr)
        return 2
    tasks, seeds = set(mine["task"]), set(range(args.seeds))
    rows = rows[rows["task"].isin(tasks) & rows["seed"].isin(seeds)]
    complete = rows.groupby(["searcher", "scheduler"])["task"].transform("size") == len(tasks) * len(seeds)
    rows = rows[complete].reset_index(drop=True)
    ahead_of = {}
    for item in args.ahead_of:
        other, _, budgets = item.partition("@")
        ahead_of[other] = [float(b) for b in budgets.split(",")]
    met, lines = verdict(rows, args.method, ahead_of)
    records.write_text(Path(args.folder) / "verdict.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
