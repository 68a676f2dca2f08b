"""Optuna's own methods on our LCBench tables, on the replay's clock, next to ours.

    pip install optuna                      # a peer, not a project dependency
    python benchmarks/optuna_peers.py --check                    # the harness against our replay first
    python benchmarks/optuna_peers.py --out optuna-peers --half odd --seeds 10 --methods optuna-tpe:fifo
    python -m experiments.replay.verdict docs/lcbench-freeze-thaw --method dpl:freeze_thaw \\
        --with optuna-peers --with docs/lcbench-suite ...        # compared with ours: the suite's tests
    python benchmarks/optuna_peers.py --report docs/lcbench-freeze-thaw docs/lcbench-freeze-thaw/optuna \\
        docs/lcbench-suite docs/lcbench-anytime-10 docs/lcbench-anytime  # docs/lcbench-freeze-thaw/optuna/hyperband.md

What runs, per data set and seed (``--methods``), every setting declared before any run was looked at:
- ``optuna-tpe:hyperband``: ``TPESampler(seed=seed)`` with ``HyperbandPruner(min_resource=1,
  max_resource=50, reduction_factor=3)`` (our ASHA's grace period, the tables' epochs and our
  reduction factor): Optuna's documented multi-fidelity setup, the most-used HPO library's own.
- ``optuna-tpe:fifo``: ``TPESampler(seed=seed)``, no pruning (every trial trains its 50 epochs).
- ``optuna-gp:fifo``: ``GPSampler(seed=seed)``, no pruning.
Everything else is Optuna's default. Each trial asks ``suggest_categorical`` for every searched
hyperparameter over the grid's values (a finite choice, as an Optuna user writes a grid), reports
its validation accuracy at every epoch (``trial.report``), asks ``should_prune`` and is told its
last epoch's value at the end (``study.tell``; a pruned trial ``TrialState.PRUNED``), through the
ask-and-tell interface. Four trials at once, as our replays: a free worker asks for the next trial
at once; the clock is our replay's (an epoch takes the table's seconds, decisions take no time), and
a run stops at 25% of the grid's compute. The regret of its pick at each share of compute is
computed exactly as our suite computes it (``run_peer`` keeps the replay's accounts), and each run is a row in
our suite's rows.jsonl format, so the suite's statistics and report apply unchanged.

``--check``: random search under FIFO is a method both sides express. Optuna's ``RandomSampler``
with our ``shuffle:fifo``'s configurations enqueued in its order (``study.enqueue_trial``) must give
our replay's regret at every share of compute, on every table asked: a harness whose clock,
concurrency, compute or pick differed from ours would show here.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import heapq  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _common  # noqa: E402,F401  (puts the repository on sys.path)

N_WORKERS = 4  # as our suite's replays (experiments.replay.suite: concurrency 4)
METHODS = ("optuna-tpe:hyperband", "optuna-tpe:fifo", "optuna-gp:fifo")
GRACE_PERIOD, REDUCTION_FACTOR = 1, 3  # our ASHA's (experiments.replay.lcbench)


def make_study(method: str, seed: int, direction: str, max_t: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    searcher, scheduler = method.split(":")
    samplers = {"optuna-tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed),
                "optuna-random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    pruners = {"fifo": optuna.pruners.NopPruner,
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=GRACE_PERIOD, max_resource=max_t,
                                                                   reduction_factor=REDUCTION_FACTOR)}
    return optuna.create_study(direction=direction, sampler=samplers[searcher](), pruner=pruners[scheduler]())


def run_peer(table, method: str, seed: int, budget: float, enqueued: list[dict] | None = None):
    """One run on the simulated clock, accounted as our replay accounts (experiments.replay.simulator):
    (its events: sim_time, compute, value per reported epoch; trials started; epochs trained). ``compute`` counts
    the finished epochs and the running ones' time so far; ``value`` is the worth of the pick core.rules makes
    now (the best validation value so far, the earlier start at a tie)."""
    import optuna

    from core.rules import selection_key

    objective = table.objective
    max_t = int(max(table.space[table.epochs_param]))
    study = make_study(method, seed, "maximize" if objective.mode == "max" else "minimize", max_t)
    for config in enqueued or ():
        study.enqueue_trial(config)
    searched = {n: list(v) for n, v in table.space.items() if len(v) > 1}
    constants = {n: v[0] for n, v in table.space.items() if len(v) == 1}
    heap: list[tuple[float, int, int]] = []
    order = itertools.count()
    running: dict[int, dict] = {}
    events: list[tuple[float, float, float]] = []
    clock, spent, limit = 0.0, 0.0, budget * table.grid_compute
    started, epochs_trained, incumbent = 0, 0, None

    def start():
        nonlocal started
        while len(running) < N_WORKERS and (enqueued is None or started < len(enqueued)):
            trial = study.ask()
            config = {n: trial.suggest_categorical(n, values) for n, values in searched.items()}
            full = {**constants, **config}
            key = table.key(full)
            curve = table.curves[key][0]
            running[trial.number] = {"trial": trial, "key": key, "curve": curve, "epoch": 0, "start": started,
                                     "epochs": int(float(full[table.epochs_param])), "epoch_start": clock}
            heapq.heappush(heap, (clock + float(curve.epoch_seconds[0]), next(order), trial.number))
            started += 1

    start()
    while heap and spent < limit:
        clock, _, number = heapq.heappop(heap)
        state = running[number]
        curve, epoch = state["curve"], state["epoch"] + 1
        state["epoch"] = epoch
        epochs_trained += 1
        value = float(curve.val[objective.metric][epoch - 1])
        spent += float(curve.epoch_seconds[epoch - 1])
        candidate = selection_key(float(curve.running_best[epoch - 1]), epoch, state["start"], objective)
        if incumbent is None or candidate > incumbent[0]:
            incumbent = (candidate, state["key"], epoch)
        compute = spent + sum(clock - s["epoch_start"] for n, s in running.items() if n != number)
        events.append((clock, compute, table.value(incumbent[1], incumbent[2])))
        trial = state["trial"]
        trial.report(value, epoch)
        if epoch >= state["epochs"]:
            study.tell(trial, value)
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            state["epoch_start"] = clock
            heapq.heappush(heap, (clock + float(curve.epoch_seconds[epoch]), next(order), number))
            continue
        del running[number]
        start()
    return pd.DataFrame(events, columns=["sim_time", "compute", "value"]), started, epochs_trained


def regret(table, events: pd.DataFrame, fractions) -> np.ndarray:
    """Our suite's regret of the pick at each share of compute (experiments.replay.stats.regret_at)."""
    from types import SimpleNamespace

    from experiments.replay.stats import regret_at

    return regret_at(SimpleNamespace(events=events), table, fractions)


def peer_row(job) -> dict:
    """One (data set, method, seed): a row in our suite's rows.jsonl format."""
    from experiments.replay.stats import ANYTIME_POINTS
    from experiments.replay.table import load_table

    folder, task, method, seed, budget = job
    table = load_table(Path(folder) / task)
    started = time.perf_counter()
    events, n_trials, epochs = run_peer(table, method, seed, budget)
    searcher, scheduler = method.split(":")
    return {"task": task, "searcher": searcher, "scheduler": scheduler, "seed": seed,
            "compute_share": float(events["compute"].iloc[-1]) / table.grid_compute, "n_trials": n_trials,
            "epochs_trained": epochs, "replay_seconds": time.perf_counter() - started,
            "grid_median_regret_pts": table.objective.regret(table.optimum, table.median_value),
            "anytime_regret_pts": regret(table, events, ANYTIME_POINTS).tolist()}


def check(folder: Path, tasks: list[str], seeds: int, budget: float) -> bool:
    """Optuna's RandomSampler with shuffle:fifo's configurations enqueued against our replay of shuffle:fifo."""
    import random

    from experiments.replay.simulator import replay_method
    from experiments.replay.stats import ANYTIME_POINTS, regret_at
    from experiments.replay.table import load_table

    same = True
    for task in tasks:
        table = load_table(Path(folder) / task)
        for seed in range(seeds):
            grid = table.task_spec().configurations()
            random.Random(seed).shuffle(grid)  # searchers.make_shuffle's order
            ours = replay_method(table, "shuffle", "fifo", seed, num_samples=len(grid), max_concurrent=N_WORKERS,
                                 budget=budget)
            events, _, _ = run_peer(table, "optuna-random:fifo", seed, budget, enqueued=grid)
            theirs = regret(table, events, ANYTIME_POINTS)
            mine = regret_at(ours, table, ANYTIME_POINTS)
            equal = np.allclose(mine, theirs, rtol=0, atol=1e-9)
            same &= bool(equal)
            print(f"{task} seed {seed}: shuffle:fifo regret at {len(ANYTIME_POINTS)} shares of compute "
                  f"{'identical' if equal else 'DIFFERENT'} (ours {mine[-1]:.4f}, Optuna's {theirs[-1]:.4f} at 100%)")
    return same


REPORT_AGAINST = ("optuna-tpe:hyperband", "optuna-tpe:fifo", "bayesopt:fifo", "bayesopt:promotion_anytime")


def report(folders: list[Path], method: str = "dpl:freeze_thaw", against=REPORT_AGAINST) -> list[str]:
    """``method`` against ``against`` on the seeds every one of them has for every data set of ``method``'s
    (paired by data set, per-data-set median over those seeds, as the suite's tests): the markdown lines."""
    from analysis.stats import wilcoxon
    from core.rules import COMPUTE_FRACTIONS
    from experiments.replay.rows import read_rows
    from experiments.replay.stats import pct
    from experiments.replay.suite import per_dataset

    rows = pd.concat([pd.DataFrame(read_rows(f)) for f in folders], ignore_index=True)
    rows["task"], rows["method"] = rows["task"].astype(str), rows["searcher"] + ":" + rows["scheduler"]
    rows = rows.drop_duplicates(["task", "method", "seed"])
    tasks = set(rows.loc[rows["method"] == method, "task"])
    rows = rows[rows["task"].isin(tasks) & rows["method"].isin([method, *against])]
    full = rows.groupby(["method", "seed"])["task"].nunique().unstack(0).fillna(0) == len(tasks)
    seeds = sorted(full.index[full.all(axis=1)])
    rows = rows[rows["seed"].isin(seeds)].reset_index(drop=True)
    series = per_dataset(rows, COMPUTE_FRACTIONS)
    shares = [f"{pct(f)}%" for f in COMPUTE_FRACTIONS]
    lines = [f"{len(tasks)} data sets x {len(seeds)} seeds ({', '.join(map(str, seeds))}: those every method has "
             "for every data set); normalized regret (0 = the grid's best, 1 = its median configuration), mean over "
             f"data sets of the per-data-set median over seeds [25th, 75th percentile over data sets]; Wilcoxon's signed-rank test paired by data set (n = "
             f"{len(tasks)}), wins / losses of `{method}`.", "",
             "| method | " + " | ".join(shares) + " |", "|---|" + "---|" * len(shares)]
    for m in (method, *against):
        lines.append(f"| {m} | " + " | ".join(f"{series[f][m].mean():.3f} [{series[f][m].quantile(0.25):.3f}, "
                                              f"{series[f][m].quantile(0.75):.3f}]" for f in COMPUTE_FRACTIONS) + " |")
    lines += ["", "| pair | " + " | ".join(shares) + " |", "|---|" + "---|" * len(shares)]
    for other in against:
        cells = []
        for f in COMPUTE_FRACTIONS:
            x, y = series[f][method].align(series[f][other], join="inner")
            cells.append(f"p={wilcoxon(x, y)[0]:.2g} {int((x < y).sum())}/{int((x > y).sum())}")
        lines.append(f"| `{method}` against {other} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    from experiments.replay.suite import default_tables_dir, tables_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for rows.jsonl (resumed: what is there is not rerun)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--half", choices=["even", "odd"], default=None)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--check", action="store_true", help="the harness against our replay (shuffle:fifo), then stop")
    parser.add_argument("--report", nargs="+", metavar="FOLDER", help="print dpl:freeze_thaw against Optuna's rows "
                        "and our bayesopt methods from these folders' rows (no replay), then stop")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report([Path(f) for f in args.report])))
        return 0
    folder = default_tables_dir()
    if not folder.is_dir():
        print(f"no LCBench tables in {folder}: python -m experiments.replay build-lcbench first", file=sys.stderr)
        return 2
    tasks = tables_of(folder, args.half)
    if args.check:
        return 0 if check(folder, tasks[:3], 2, args.budget) else 1
    if not args.out:
        parser.error("--out is needed (or --check)")
    from syne_tune_013_peers import run

    run(args, folder, tasks, row_of=peer_row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
