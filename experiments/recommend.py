"""Which method for which budget: a table generated from the committed LCBench suite rows.

The budget is a share of the grid's compute (what the replay and the LCBench suite report: 0.5%
to 25%). The rule, for each share the suite reports, among the methods every data set and seed of
the suite ran: take the method with the lowest mean normalized regret across the 34 LCBench data
sets (per data set the median over seeds); the methods not significantly different from it there
(Wilcoxon's signed-rank test across data sets, p >= 0.05) are tied with it. From the smallest
share up, the table keeps the method of the share below while it is among the tied; otherwise it
names the tied method with the lowest mean regret over all the shares. So neighbouring budgets get
the same method unless the evidence separates them, not whichever of two tied methods is ahead by
noise. Disclosure: this rule was settled while looking at the rows it is applied to (the lowest
mean alone switched between tied methods from one share to the next); it has not been checked on
other data. Each row gives
the method's spread, the runner-up (the next by mean regret at that share) and the test of the
two. A budget between two shares takes the row of the share below it (below the first, the
first; above the last, the last).

The rule is fixed here, not chosen per budget, and the table is data: ``python -m
experiments.recommend`` writes it again from the rows (``RECOMMENDATION``, shipped with the
package); a better method measured on the suite changes the table, not the code.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

RECOMMENDATION = Path(__file__).with_name("recommendation.csv")
SOURCE = "docs/lcbench-anytime-10"  # the suite folder (with the folders its suite.json joins)
COLUMNS = ("budget_pct", "method", "norm_regret_mean", "norm_regret_q25", "norm_regret_q75", "runner_up",
           "runner_up_norm_regret_mean", "p_vs_runner_up", "wins_vs_runner_up", "n_datasets", "n_seeds",
           "n_methods", "source")


@dataclass(frozen=True)
class Recommendation:
    budget_pct: float  # the suite's share of the grid's compute whose row this is
    method: str  # searcher:scheduler
    norm_regret_mean: float
    norm_regret_q25: float
    norm_regret_q75: float
    runner_up: str
    runner_up_norm_regret_mean: float
    p_vs_runner_up: float | None
    wins_vs_runner_up: int
    n_datasets: int
    n_seeds: int
    n_methods: int
    source: str

    @property
    def searcher(self) -> str:
        return self.method.split(":")[0]

    @property
    def scheduler(self) -> str:
        return self.method.split(":")[1]

    def why(self, fraction: float, basis: str = "estimated") -> str:
        """The one line that says which method and why; ``basis``: how the share was found."""
        test = (f"Wilcoxon p = {self.p_vs_runner_up:.2g}, {self.wins_vs_runner_up}/{self.n_datasets} data sets"
                if self.p_vs_runner_up is not None else "no test")
        return (f"{self.method}: at {fraction:.2%} of the grid's compute ({basis}), the LCBench suite's {self.budget_pct:g}% "
                f"row: lowest normalized regret of {self.n_methods} methods, {self.norm_regret_mean:.3f} "
                f"[IQR {self.norm_regret_q25:.3f}, {self.norm_regret_q75:.3f}] over {self.n_datasets} data sets x "
                f"{self.n_seeds} seeds; next {self.runner_up} {self.runner_up_norm_regret_mean:.3f} ({test}; "
                f"docs/results/lcbench.md)")


def load_table(path: Path = RECOMMENDATION) -> list[Recommendation]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append(Recommendation(
            budget_pct=float(r["budget_pct"]), method=r["method"], norm_regret_mean=float(r["norm_regret_mean"]),
            norm_regret_q25=float(r["norm_regret_q25"]), norm_regret_q75=float(r["norm_regret_q75"]),
            runner_up=r["runner_up"], runner_up_norm_regret_mean=float(r["runner_up_norm_regret_mean"]),
            p_vs_runner_up=float(r["p_vs_runner_up"]) if r["p_vs_runner_up"] else None,
            wins_vs_runner_up=int(r["wins_vs_runner_up"]), n_datasets=int(r["n_datasets"]),
            n_seeds=int(r["n_seeds"]), n_methods=int(r["n_methods"]), source=r["source"]))
    return sorted(out, key=lambda r: r.budget_pct)


def recommend(fraction: float, table: list[Recommendation] | None = None) -> Recommendation:
    """The row for a budget of ``fraction`` of the grid's compute (module docstring)."""
    table = table if table is not None else load_table()
    below = [r for r in table if r.budget_pct / 100 <= fraction + 1e-12]
    return below[-1] if below else table[0]


# --- generating the table from the suite's rows ------------------------------------------------
def suite_rows(folder: Path):
    """The rows of a suite folder and of the folders its suite.json joins (``with``), one per
    (data set, method, seed), the folder's own last, restricted to its seeds."""
    import pandas as pd

    from experiments.replay.rows import read_rows, row_key

    folder = Path(folder)
    settings = json.loads((folder / "suite.json").read_text())
    root = folder.parent.parent  # the paths in "with" are the repository's (docs/...)
    rows = {}
    for other in [*settings.get("with", []), None]:
        for row in read_rows(root / other if other else folder):
            rows[row_key(row)] = row
    frame = pd.DataFrame(list(rows.values()))
    return frame[frame["seed"] < settings["n_seeds"]].reset_index(drop=True), settings


def generate(folder: Path) -> list[dict]:
    import numpy as np
    import pandas as pd

    from analysis.stats import wilcoxon
    from experiments.replay.stats import ANYTIME_POINTS, pct
    from experiments.replay.suite import SUITE_FRACTIONS, at, normalized

    rows, settings = suite_rows(folder)
    method = rows["searcher"] + ":" + rows["scheduler"]
    n_tasks = rows["task"].nunique()
    complete = [m for m, g in rows.groupby(method) if len(g) == n_tasks * settings["n_seeds"]]
    keep = method.isin(complete)
    rows, method = rows[keep].reset_index(drop=True), method[keep].reset_index(drop=True)
    norm = normalized(rows)
    per_task = {f: pd.Series(norm[:, at(ANYTIME_POINTS, f)]).groupby([method, rows["task"]]).median()
                for f in SUITE_FRACTIONS}
    means = {f: per_task[f].groupby(level=0).mean().sort_values(kind="stable") for f in SUITE_FRACTIONS}
    overall = sum(means[f] for f in SUITE_FRACTIONS) / len(SUITE_FRACTIONS)

    def test(f, a, b):
        x, y = per_task[f][a].align(per_task[f][b], join="inner")
        p, _ = wilcoxon(x, y)
        return (None if p is None or p != p else p), int((x < y).sum())

    out, best = [], None
    for f in SUITE_FRACTIONS:
        lowest = means[f].index[0]
        tied = [m for m in means[f].index if m == lowest or (test(f, m, lowest)[0] or 0) >= 0.05]
        best = best if best in tied else min(tied, key=lambda m: (overall[m], means[f][m]))
        runner = next(m for m in means[f].index if m != best)
        p, wins = test(f, best, runner)
        x = per_task[f][best]
        q25, q75 = np.percentile(x, [25, 75])
        out.append({"budget_pct": float(pct(f)), "method": best, "norm_regret_mean": round(float(means[f][best]), 6),
                    "norm_regret_q25": round(float(q25), 6), "norm_regret_q75": round(float(q75), 6),
                    "runner_up": runner, "runner_up_norm_regret_mean": round(float(means[f][runner]), 6),
                    "p_vs_runner_up": "" if p is None else f"{p:.6g}", "wins_vs_runner_up": wins,
                    "n_datasets": n_tasks, "n_seeds": settings["n_seeds"], "n_methods": len(complete),
                    "source": SOURCE})
    return out


def markdown(table: list[Recommendation] | None = None) -> str:
    """The table as the README shows it (tests/test_structure.py checks the README holds exactly this)."""
    table = table if table is not None else load_table()
    first = table[0]
    lines = ["| share of the grid's compute | recommended method | normalized regret, mean [IQR] | next best (mean) "
             "| Wilcoxon p, data sets where it is lower |",
             "|---|---|---|---|---|"]
    for r in table:
        p = "-" if r.p_vs_runner_up is None else f"{r.p_vs_runner_up:.2g}"
        lines.append(f"| {r.budget_pct:g}% | `{r.method}` | {r.norm_regret_mean:.3f} [{r.norm_regret_q25:.3f}, "
                     f"{r.norm_regret_q75:.3f}] | {r.runner_up} ({r.runner_up_norm_regret_mean:.3f}) | {p}, "
                     f"{r.wins_vs_runner_up}/{r.n_datasets} |")
    lines += ["", f"n = {first.n_datasets} LCBench data sets x {first.n_seeds} seeds, {first.n_methods} methods at equal "
              "compute; normalized regret: 0 = the grid's best, 1 = its median configuration. Generated by "
              f"`python -m experiments.recommend` from `{first.source}`."]
    return "\n".join(lines)


def write_table(rows: list[dict], path: Path) -> None:
    from core import records

    records.write_csv(path, COLUMNS, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.recommend",
                                     description="Write the method-for-budget table from a committed LCBench suite.")
    parser.add_argument("--from", dest="source", default=SOURCE, help=f"the suite folder (default: {SOURCE})")
    parser.add_argument("--out", default=str(RECOMMENDATION), help="the table to write")
    parser.add_argument("--markdown", action="store_true", help="print the committed table as the README shows it")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
        return 0
    if not (Path(args.source) / "suite.json").is_file():
        print(f"{parser.prog}: error: no suite.json in {args.source} (run it from the repository's root)", file=sys.stderr)
        return 2
    rows = generate(Path(args.source))
    write_table(rows, Path(args.out))
    for r in rows:
        print(f"{r['budget_pct']:>5g}%  {r['method']:<28} {r['norm_regret_mean']:.3f}  next {r['runner_up']} "
              f"{r['runner_up_norm_regret_mean']:.3f} (p = {r['p_vs_runner_up'] or '-'})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
