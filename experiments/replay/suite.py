"""The LCBench suite: every method replayed on the 34 LCBench tables, compared across data sets.

``python -m experiments.replay build-lcbench`` writes the tables (one per data set, from the
surrogate, cached and deterministic); ``python -m experiments.replay --suite lcbench --seeds 10``
replays every method on every table and writes (experiments.replay.suite_report), next to each data
set's own statistics:

- normalized regret: the regret of a method's pick divided by the regret of the grid's median
  configuration (0 = the grid's best, 1 = the grid's median; above 1, worse than half the grid);
- average rank over compute (the figure HPO papers show): at each share of the grid's compute
  the methods are ranked by regret on each data set and seed (ties share a rank), then averaged;
- Wilcoxon's signed-rank test across data sets (n = 34 pairs of per-data-set medians over
  seeds) of each method against each control (random:fifo, random:asha), with the
  rank-biserial effect size.

Every method runs until it has spent ``budget`` of the grid's compute (equal compute for all),
or until its searcher has nothing left to suggest (grid search, and BayesOpt, which never repeats
a configuration, can exhaust the grid under ASHA): ``summary.md`` names the methods that ended
early and their share. ``max_trials`` stays only as a guard far above what any method starts at
25% (under ASHA about 7,000 trials), and the summary says if a method hit it. ``PAIRS`` adds the
same test between named methods: the rung-aware searcher against the last-report ones.

Halves: a setting chosen by looking at LCBench numbers is chosen on one half of the tables and
reported on the other (``--half even|odd``: the tables with even or odd index in the sorted task
list); ``summary.md`` says which tables its numbers come from. Each table's fidelity sanity
(``fidelity.csv``, experiments.replay.fidelity) is summarized there, with a loud warning for
tables whose first rung is uninformative.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import wilcoxon
from core import records
from core.rules import COMPUTE_FRACTIONS, method_label
from experiments.replay.fidelity import fidelity_lines
from experiments.replay.rows import ROWS_FILE, read_journal, row_key
from experiments.replay.stats import ANYTIME_POINTS, CONTROLS, pct, regret_at, seed_row
from experiments.replay.table import Table, load_table

SUITE_FRACTIONS = COMPUTE_FRACTIONS  # shares of the grid's compute the suite reports (core.rules)
TESTED_FRACTIONS = (0.005, 0.01, 0.02, 0.10, 0.25)  # ... and where it tests methods against each other
BUDGET = 0.25  # a method stops once it has spent this share of the grid's compute
# A guard, not a budget: far above the ~7,000 trials ASHA starts within 25% of an LCBench grid
# (most stop after one epoch). The 1,000 of before ended every ASHA method near 3% of the grid's
# compute, so at 10% and 25% it was compared with its 3% pick.
MAX_TRIALS = 100_000
HALVES = ("even", "odd")  # index parity in the sorted task list


def tables_of(folder: Path, half: str | None = None) -> list[str]:
    """The tables in ``folder`` (sorted task names), or one half of them (HALVES)."""
    tasks = sorted(p.name for p in Path(folder).iterdir() if (p / "run.json").is_file())
    if half is None:
        return tasks
    return tasks[HALVES.index(half)::2]
PAIRS = (("rungbo:asha", "bayesopt:asha"), ("rungbo:asha", "hyperopt:asha"), ("rungbo:asha", "random:asha"),
         ("rungbo:fifo", "bayesopt:fifo"),
         # pausing against stopping, brackets against one grace period, and each against BayesOpt run to the end
         ("random:promotion", "random:asha"), ("random:hyperband", "random:asha"),
         ("random:hyperband_promotion", "random:promotion"), ("random:promotion", "bayesopt:fifo"),
         ("random:hyperband_promotion", "bayesopt:fifo"), ("rungbo:promotion", "rungbo:asha"),
         ("rungbo:promotion", "bayesopt:fifo"),
         # model-based search under promotion, and spending what is left once the grid is tried (anytime)
         ("bayesopt:promotion", "bayesopt:fifo"), ("bayesopt:promotion_anytime", "bayesopt:fifo"),
         ("bayesopt:promotion_anytime", "bayesopt:promotion"), ("bayesopt:promotion_anytime", "random:promotion"),
         ("shuffle:promotion_anytime", "shuffle:promotion"),
         # Syne Tune's promotion test against Li et al.'s (docs/lcbench-quantile), and HyperOpt under ASHA against FIFO
         ("bayesopt:promotion_quantile_anytime", "bayesopt:promotion_anytime"),
         ("bayesopt:promotion_quantile_anytime", "bayesopt:fifo"), ("hyperopt:asha", "hyperopt:fifo"),
         # a rung ranked by the predicted next value against the value itself (docs/lcbench-curve-choice)
         ("bayesopt:promotion_curve_anytime", "bayesopt:promotion_anytime"),
         ("bayesopt:promotion_curve_anytime", "bayesopt:fifo"),
         # promotion from the second rung against the first, and against BayesOpt run to the end (docs/lcbench-bracket1)
         ("bayesopt:promotion_bracket1_anytime", "bayesopt:promotion_anytime"),
         ("bayesopt:promotion_bracket1_anytime", "bayesopt:fifo"),
         ("bayesopt:promotion_bracket1_anytime", "random:promotion"),
         # freeze-thaw with DPL's model (docs/lcbench-freeze-thaw), as published and anchored at the curve
         *((f"dpl:{s}", other) for s in ("freeze_thaw", "freeze_thaw_anchor")
           for other in ("bayesopt:fifo", "bayesopt:promotion_anytime", "random:promotion")))


def default_tables_dir() -> Path:
    """Under the cache folder, keyed by the grid, the YAHPO epochs kept and the surrogate: a changed
    grid, or tables from before the untrained epoch 1 was dropped, are never reused."""
    from experiments.replay import lcbench
    from trainables.data import default_cache_dir

    key = hashlib.sha256(repr((lcbench.GRID, lcbench.GRACE_PERIOD, lcbench.REDUCTION_FACTOR, lcbench.YAHPO_EPOCHS)).encode()
                         + (lcbench.SURROGATE_DIR / "model.onnx").read_bytes()).hexdigest()[:12]
    return Path(default_cache_dir()) / "lcbench" / key


def build_tables(folder: Path | None = None, tasks=None, echo=print) -> Path:
    """Every LCBench table not built yet, the grid's gap to a large random sample per data set
    (grid_gap.csv), and each table's fidelity sanity (fidelity.csv), echoed as a table."""
    from experiments.replay import lcbench

    folder = Path(folder or default_tables_dir())
    surrogate = lcbench.Surrogate()
    tasks = list(tasks or surrogate.tasks)
    done = all((folder / t / "run.json").is_file() for t in tasks)
    if not (done and (folder / "grid_gap.csv").is_file()):
        gaps = []
        for task in tasks:
            if not (folder / task / "run.json").is_file():
                lcbench.write_table(surrogate, task, folder / task)
            table = load_table(folder / task)
            sampled = lcbench.random_sample_best(surrogate, task, 10_000)
            gaps.append({"task": task, "grid_best": table.optimum, "random_10000_best": sampled,
                         "gap_pts": 100.0 * (sampled - table.optimum)})
            echo(f"lcbench {task}: grid best {table.optimum:.4f}, best of 10,000 random {sampled:.4f}")
        records.write_csv(folder / "grid_gap.csv", ["task", "grid_best", "random_10000_best", "gap_pts"], gaps)
    sanity = _fidelity_of(folder, tasks)  # read back where written before, computed otherwise
    if not (folder / FIDELITY_FILE).is_file():
        records.write_csv(folder / FIDELITY_FILE, list(sanity.columns), sanity.to_dict("records"))
    for line in fidelity_lines(sanity):
        echo(line)
    return folder


FIDELITY_FILE = "fidelity.csv"  # per table and rung: experiments.replay.fidelity's columns


def _fidelity_of(folder: Path, tasks) -> pd.DataFrame:
    """The tables' fidelity rows: from the tables' fidelity.csv where build-lcbench wrote it (and it
    covers them), else computed (tables given with --tables may come from elsewhere)."""
    path = Path(folder) / FIDELITY_FILE
    if path.is_file():
        frame = pd.read_csv(path, dtype={"task": str})
        if set(tasks) <= set(frame["task"]):
            return frame[frame["task"].isin(tasks)].reset_index(drop=True)
    from experiments.replay import fidelity

    frames = [fidelity.fidelity(_table(str(Path(folder) / t))).assign(task=t) for t in tasks]
    return pd.concat(frames, ignore_index=True)[["task", *fidelity.COLUMNS]]


@functools.lru_cache(maxsize=2)
def _table(path: str) -> Table:
    return load_table(path)


def _job(job):
    from experiments.replay.simulator import replay_method

    path, searcher, scheduler, seed, budget, max_trials = job
    table = _table(path)
    started = time.perf_counter()
    run = replay_method(table, searcher, scheduler, seed, num_samples=max_trials, budget=budget)
    seconds = time.perf_counter() - started  # where the suite's time goes, per method
    worst = table.objective.regret(table.optimum, table.median_value)
    anytime = regret_at(run, table, ANYTIME_POINTS)
    return {"task": Path(path).name, **seed_row(run, table), "replay_seconds": seconds, "grid_median_regret_pts": worst,
            "anytime_regret_pts": anytime.tolist()}


def run_suite(folder: Path, methods, seeds, budget: float = BUDGET, max_trials: int = MAX_TRIALS,
              workers: int = 1, out: Path | None = None, progress: bool = False, half: str | None = None,
              known: list[dict] = ()) -> pd.DataFrame:
    """One row per (data set, method, seed): seed_row's statistics plus the anytime regret.
    With ``out``, each row is appended to ``out/rows.jsonl`` as its replay finishes, and the
    replays already there are not run again: a killed run resumes, and a run with more seeds or
    methods adds only what is missing (``check_resumable`` guards the settings). ``known``: rows of
    other suite folders (``--with``, ``check_joinable``), reused and not written to ``out``."""
    from experiments.replay.simulator import map_jobs

    tasks = tables_of(folder, half)
    wanted = [(t, s, c, seed) for t in tasks for s, c in methods for seed in seeds]
    journal = Path(out) / ROWS_FILE if out is not None else None
    done = {row_key(r): r for r in known}
    done.update({row_key(r): r for r in read_journal(journal)} if journal else {})
    jobs = [(str(Path(folder) / t), s, c, seed, budget, max_trials) for t, s, c, seed in wanted
            if (t, s, c, seed) not in done]
    results = map_jobs(_job, jobs, workers, ordered=False)
    desc = f"replays ({len(wanted) - len(jobs)} done before)" if done else "replays"
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), unit="replay", file=sys.stderr, dynamic_ncols=True, desc=desc)
    elif progress:  # piped or in a log: plain lines, not a bar's carriage-return stream
        results = _plain_progress(results, len(jobs), desc)
    if journal:
        journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a") if journal else contextlib.nullcontext() as sink:
        if sink is not None and journal.stat().st_size and not journal.read_bytes().endswith(b"\n"):
            sink.write("\n")  # end a line cut by a kill, or the next row would be glued to it and lost too
        for row in results:
            done[row_key(row)] = row
            if sink is not None:
                sink.write(json.dumps(row, default=_plain) + "\n")  # one write per row, flushed: a kill cuts one line at most
                sink.flush()
    return pd.DataFrame([done[key] for key in wanted])


PLAIN_PROGRESS_S = 30.0  # seconds between plain progress lines


def _plain_progress(results, total: int, desc: str, clock=time.monotonic):
    """Yield ``results``, printing "<desc>: k/total, elapsed, left" to stderr at most every
    PLAIN_PROGRESS_S seconds and at the end."""
    started = last = clock()
    for k, row in enumerate(results, start=1):
        yield row
        now = clock()
        if now - last >= PLAIN_PROGRESS_S or k == total:
            left = (now - started) / k * (total - k)
            print(f"{desc}: {k}/{total} done, elapsed {now - started:.0f} s, left ~{left:.0f} s", file=sys.stderr,
                  flush=True)
            last = now


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars


def normalized(rows: pd.DataFrame) -> np.ndarray:
    """(rows, ANYTIME_POINTS) regret / the grid median's regret."""
    anytime = np.array(rows["anytime_regret_pts"].tolist())
    return anytime / rows["grid_median_regret_pts"].to_numpy()[:, None]


def average_rank(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean rank (1 = best) of each method at each compute share, over data sets and seeds."""
    anytime = np.array(rows["anytime_regret_pts"].tolist())
    ranks = np.zeros_like(anytime)
    for _, idx in rows.groupby(["task", "seed"]).indices.items():
        ranks[idx] = pd.DataFrame(anytime[idx]).rank(axis=0, method="average").to_numpy()
    method = rows["searcher"] + ":" + rows["scheduler"]
    frame = pd.DataFrame(ranks, columns=ANYTIME_POINTS)
    frame["method"] = method.to_numpy()
    return frame.groupby("method", sort=False).mean()


def at(points, fraction: float) -> int:
    return int(np.searchsorted(points, fraction, side="right") - 1)


def per_dataset(rows: pd.DataFrame, fractions) -> dict[float, pd.Series]:
    """Per share of compute: each method's normalized regret per data set, the median over its seeds,
    indexed by (method, task): what every test across data sets pairs."""
    norm = normalized(rows)
    method = rows["searcher"] + ":" + rows["scheduler"]
    return {f: pd.Series(norm[:, at(ANYTIME_POINTS, f)], index=rows.index).groupby([method, rows["task"]]).median()
            for f in fractions}


def cross_dataset(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: normalized regret (median over seeds per data set, then mean and quartiles
    over data sets) and average rank at SUITE_FRACTIONS, and Wilcoxon across data sets
    against each control."""
    rows = rows.assign(method=rows["searcher"] + ":" + rows["scheduler"])
    ranks = average_rank(rows)
    per_task = per_dataset(rows, SUITE_FRACTIONS)
    out = []
    for method in dict.fromkeys(rows["method"]):
        row = {"method": method, "n_datasets": rows.loc[rows["method"] == method, "task"].nunique()}
        for f in SUITE_FRACTIONS:
            at_f = pct(f)
            mine = per_task[f][method]
            row[f"norm_regret_at_{at_f}pct_mean"] = float(mine.mean())
            row[f"norm_regret_at_{at_f}pct_q25"], row[f"norm_regret_at_{at_f}pct_q75"] = np.percentile(mine, [25, 75])
            row[f"avg_rank_at_{at_f}pct"] = float(ranks.loc[method, ANYTIME_POINTS[at(ANYTIME_POINTS, f)]])
            for (s, c), prefix in CONTROLS.items():
                control = method_label(s, c)
                if control == method or control not in per_task[f].index.get_level_values(0):
                    continue
                x, y = mine.align(per_task[f][control], join="inner")
                p, r = wilcoxon(x, y)
                row.update({f"{prefix}_at_{at_f}pct_p": p, f"{prefix}_at_{at_f}pct_r": r,
                            f"{prefix}_at_{at_f}pct_wins": int((x < y).sum()), f"{prefix}_at_{at_f}pct_n": int(len(x))})
        out.append(row)
    return pd.DataFrame(out)


def pairwise(rows: pd.DataFrame, pairs=PAIRS) -> pd.DataFrame:
    """Wilcoxon across data sets of each named pair (a against b) at TESTED_FRACTIONS, on the
    per-data-set median normalized regret over seeds; pairs with a method not run are left out."""
    method = set(rows["searcher"] + ":" + rows["scheduler"])
    per_task = per_dataset(rows, TESTED_FRACTIONS)  # once, not per pair
    out = []
    for a, b in pairs:
        if a not in method or b not in method:
            continue
        row = {"method": a, "against": b}
        for f in TESTED_FRACTIONS:
            series = per_task[f]
            x, y = series[a].align(series[b], join="inner")
            p, r = wilcoxon(x, y)
            at_f = pct(f)
            row.update({f"p_at_{at_f}pct": p, f"r_at_{at_f}pct": r, f"wins_at_{at_f}pct": int((x < y).sum()),
                        f"ties_at_{at_f}pct": int((x == y).sum()), f"n_at_{at_f}pct": int(len(x))})
        out.append(row)
    return pd.DataFrame(out)
