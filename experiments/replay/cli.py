"""``python -m experiments.replay``: replay searchers and schedulers on a recorded grid run.

Deliberately lazy: the simulator (Ray) is imported only once the arguments and the table
have been checked, so ``--help`` and bad input answer at once, without importing Ray or torch.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from core import records
from core.cli import OneLineErrorParser
from experiments.replay.report import write_results
from experiments.replay.table import ReplayError, Table, load_table
from experiments.spec import SpecError, parse_methods
from searchers import ALL_SCHEDULERS, SEARCHERS
from core.rules import method_label
from trainables import TASK_MODULES, get_task

BUILTIN = Path(__file__).resolve().parent.parent / "tables"  # shipped recorded tables: tables/<task>/


def builtin_tables() -> list[str]:
    return sorted(p.name for p in BUILTIN.iterdir() if (p / "run.json").is_file()) if BUILTIN.is_dir() else []


def parse_args(argv):
    parser = OneLineErrorParser(prog="python -m experiments.replay",
                                 description="Replay searchers and schedulers on a recorded grid run's learning curves, "
                                             "over many seeds, on a simulated clock.")
    parser.add_argument("run_dir", nargs="?", help="a run folder holding a grid:fifo run (its curves.csv is the table)")
    parser.add_argument("--builtin", default=None, help=f"replay a table shipped with the package: "
                                                        f"{', '.join(builtin_tables()) or 'none'}")
    parser.add_argument("--suite", default=None, choices=["lcbench"],
                        help="replay every method on the 34 LCBench tables (built first where missing: "
                             "python -m experiments.replay build-lcbench) and compare across data sets")
    parser.add_argument("--budget", type=float, default=None,
                        help="--suite: share of the grid's compute a method may spend (default 0.25)")
    parser.add_argument("--max-trials", type=int, default=None,
                        help="--suite: a guard on the trials a method may start (default 100000, far above "
                             "what any method starts within the budget)")
    parser.add_argument("--half", default=None, choices=["even", "odd"],
                        help="--suite: only the tables with even or odd index in the sorted task list (choose "
                             "settings on one half, report on the other)")
    parser.add_argument("--tables", default=None,
                        help="--suite: the LCBench tables' folder (default: the cache, built there where missing)")
    parser.add_argument("--seeds", type=int, default=20, help="replay seeds per method (0..N-1; default 20)")
    parser.add_argument("--methods", default=",".join(f"{s}:*" for s in SEARCHERS),
                        help="comma-separated searcher[:scheduler], as in run_all.py: a searcher alone gets its "
                             f"default scheduler, searcher:* fifo and asha (schedulers: {', '.join(ALL_SCHEDULERS)}); "
                             "default: every searcher with fifo and asha")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="trials per sampling searcher (default: the recorded run's)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once on the simulated clock (default: the recorded run's)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA's first rung in epochs (default: the task's current setting)")
    parser.add_argument("--reduction-factor", type=int, default=None,
                        help="ASHA's reduction factor (default: the task's current setting)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: the CPUs)")
    parser.add_argument("--out", default=None, help="output folder (default: <run folder>/replay)")
    parser.add_argument("--with", dest="with_rows", action="append", default=[], metavar="SUITE_FOLDER",
                        help="--suite: reuse the rows of another suite folder made with the same settings (e.g. "
                             "the committed docs/lcbench-*) instead of replaying them again; the report covers "
                             "--methods x --seeds, the new rows go to --out")
    args = parser.parse_args(argv)
    if args.reduction_factor is not None and args.reduction_factor < 2:
        parser.error(f"--reduction-factor must be at least 2, got {args.reduction_factor}")
    if sum(x is not None for x in (args.run_dir, args.builtin, args.suite)) != 1:
        parser.error("give a grid run folder, --builtin <task> or --suite lcbench, one of them")
    if args.suite is not None and args.out is None:
        parser.error("--suite needs --out <folder>")
    if args.suite is None and (args.half is not None or args.max_trials is not None or args.budget is not None
                               or args.tables is not None):
        parser.error("--half, --max-trials, --budget and --tables go with --suite lcbench")
    if args.budget is not None and not 0 < args.budget <= 1:
        parser.error(f"--budget must be in (0, 1], got {args.budget}")
    if args.builtin is not None and args.builtin not in builtin_tables():
        parser.error(f"no built-in table {args.builtin!r}; built-in: {', '.join(builtin_tables()) or 'none'}")
    if args.builtin is not None and args.out is None:
        parser.error("--builtin needs --out <folder> (the shipped table is not written into)")
    for name in ("seeds", "num_samples", "max_concurrent", "workers", "grace_period", "max_trials"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    try:
        args.methods = list(parse_methods(args.methods, ALL_SCHEDULERS))
    except SpecError as exc:
        parser.error(str(exc))
    return args


def with_asha_settings(table: Table, grace_period: int | None, reduction_factor: int | None) -> Table:
    """The table with ASHA's settings as given, else the task's current ones (the grid's
    recording does not depend on them; the replay should use what a run would use now), else
    the recorded run's."""
    if table.task in TASK_MODULES:
        current = get_task(table.task).for_budget(table.budget)
        grace_period = grace_period or current.grace_period
        reduction_factor = reduction_factor or current.reduction_factor
    return dataclasses.replace(table, grace_period=grace_period or table.grace_period,
                               reduction_factor=reduction_factor or table.reduction_factor, _value={})


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build-lcbench"]:
        return build_lcbench(argv[1:])
    args = parse_args(argv)
    if args.suite:
        return suite_main(args)
    source = BUILTIN / args.builtin if args.builtin else Path(args.run_dir)
    out = Path(args.out) if args.out else source / "replay"
    try:
        table = load_table(source)
        if (out / "replay.json").exists():  # a replay's results are never replaced without a word
            raise ReplayError(f"{out} holds an earlier replay (replay.json); pass --out with another folder, "
                              "or remove that one to replace it")
        out.mkdir(parents=True, exist_ok=True)
    except (ReplayError, OSError) as exc:
        print(f"python -m experiments.replay: error: {exc}", file=sys.stderr)
        return 2
    table = with_asha_settings(table, args.grace_period, args.reduction_factor)
    settings = {"source": str(source), "task": table.task, "n_seeds": args.seeds,
                "grace_period": table.grace_period, "reduction_factor": table.reduction_factor,
                "methods": [method_label(s, c) for s, c in args.methods],
                "num_samples": args.num_samples or table.num_samples,
                "max_concurrent": args.max_concurrent or table.max_concurrent, "workers": args.workers}
    print(f"replaying {len(args.methods)} methods x {args.seeds} seeds on {table.task} ({len(table.curves)} "
          f"configurations, concurrency {settings['max_concurrent']}) ...")
    from experiments.replay.simulator import replay_all  # Ray: only now (see the module's docstring)

    started = time.perf_counter()
    runs, seeds = replay_all(table, args.methods, range(args.seeds), args.num_samples, args.max_concurrent,
                             workers=args.workers)
    settings["replay_seconds"] = time.perf_counter() - started
    summary = write_results(out, table, runs, seeds, settings)
    print((out / "summary.md").read_text())
    print(f"replayed in {settings['replay_seconds']:.1f} s; results in {out}")
    return 0



def build_lcbench(argv) -> int:
    """``python -m experiments.replay build-lcbench [--out FOLDER]``: every LCBench table."""
    from experiments.replay.suite import build_tables

    parser = OneLineErrorParser(prog="python -m experiments.replay build-lcbench",
                                description="Build the 34 LCBench replay tables from YAHPO Gym's surrogate (cached).")
    parser.add_argument("--out", default=None, help="tables' folder (default: under the cache folder)")
    args = parser.parse_args(argv)
    folder = build_tables(Path(args.out) if args.out else None)
    print(f"LCBench tables in {folder}; the grid's gap to 10,000 random configurations: {folder / 'grid_gap.csv'}")
    return 0


def suite_main(args) -> int:
    from experiments.replay import rows, suite, suite_report

    if args.tables:  # the tables given are the suite: none is built into a folder of the user's
        folder = Path(args.tables)
        if not folder.is_dir() or not any((p / "run.json").is_file() for p in folder.iterdir()):
            print(f"python -m experiments.replay: error: no LCBench table in {folder} "
                  "(build them: python -m experiments.replay build-lcbench --out <folder>)", file=sys.stderr)
            return 2
    else:
        folder = suite.build_tables(suite.default_tables_dir(), echo=lambda line: None)
    settings = {"suite": "lcbench", "tables": str(folder), "n_seeds": args.seeds,
                "methods": [method_label(s, c) for s, c in args.methods], "budget": args.budget or suite.BUDGET,
                "max_trials": args.max_trials or suite.MAX_TRIALS, "workers": args.workers,
                "max_concurrent": 4, "half": args.half, "n_datasets": len(suite.tables_of(folder, args.half))}
    out = Path(args.out)
    known = []
    try:
        rows.check_resumable(out, settings)
        for other in args.with_rows:
            rows.check_joinable(Path(other), settings)
            known += rows.read_rows(Path(other))
        settings["with"] = list(args.with_rows)
        out.mkdir(parents=True, exist_ok=True)
    except (rows.SuiteError, OSError) as exc:
        print(f"python -m experiments.replay: error: {exc}", file=sys.stderr)
        return 2
    records.write_json(out / "suite.json", settings)  # before any row: what check_resumable compares with
    print(f"replaying {len(args.methods)} methods x {args.seeds} seeds on {settings['n_datasets']} LCBench tables "
          f"({args.workers} workers; each replay is kept in {out / rows.ROWS_FILE} as it ends, and a rerun "
          "skips those) ...")
    started = time.perf_counter()
    try:
        replays = suite.run_suite(folder, args.methods, range(args.seeds), settings["budget"], settings["max_trials"],
                                  workers=args.workers, out=out, progress=True, half=args.half, known=known)
        settings["replay_seconds"] = time.perf_counter() - started  # this invocation's wall clock
        settings["replay_worker_seconds"] = float(replays["replay_seconds"].sum())  # every row's, resumed ones too
        suite_report.write(out, replays, settings)
    except OSError as exc:
        if not records.is_storage_error(exc):
            raise
        # rows.jsonl holds every replay that ended (a cut last line is rerun): the same command continues
        print(f"python -m experiments.replay: error: writing {exc.filename or out} failed ({exc.strerror}); the "
              f"replays that ended are kept in {out / rows.ROWS_FILE}: make room, then rerun the same command",
              file=sys.stderr)
        return 1
    print((out / "summary.md").read_text())
    print(f"replayed in {settings['replay_seconds']:.0f} s ({settings['replay_worker_seconds']:.0f} worker-seconds in "
          f"all {len(replays)} replays); results in {args.out}")
    return 0
