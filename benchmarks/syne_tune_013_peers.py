"""Syne Tune 0.13's model-based multi-fidelity methods on our LCBench tables, next to ours
(issues 20 and 22): MOBSTER, HyperTune, DyHPO and promotion-type ASHA.

    python3 -m venv .peer-venv && .peer-venv/bin/pip install "syne-tune[gpsearchers,sklearn]==0.13.0"
    .peer-venv/bin/python benchmarks/syne_tune_013_peers.py --out peers013 --seeds 3 --workers 2
    python benchmarks/syne_tune_013_peers.py --out peers013 --seeds 3 --report \\
        --ours docs/lcbench-pausing --ours docs/lcbench-suite       # any venv: the comparison only

Why a virtual environment of its own: Syne Tune 0.13.0 is the last release with these methods
(0.14 removed them) and it needs numpy < 1.27, which the project does not; so it is not a project
dependency. The script reads our tables with the project's own code (numpy/pandas only, no Ray).

What runs, per data set and seed (``--methods``; each is Syne Tune's class with its defaults
unless said here, every setting declared before any run was looked at):
- ``syne-mobster:promotion`` and ``syne-mobster:stopping``: ``MOBSTER`` (GP multi-task model)
- ``syne-hypertune:promotion``: ``HyperTune`` (brackets, GP per rung, ensemble)
- ``syne-dyhpo:promotion``: ``DyHPO`` (its rungs every 2 epochs from 2, the library's default
  spacing; it warns unless grace period = rung increment)
- ``syne-random:promotion``: ``ASHA(type="promotion")``, the counterpart of our random:promotion
All with our ASHA settings (grace period 1, reduction factor 3; DyHPO above), 4 workers as our
replays, ``restrict_configurations`` = our 1,944-configuration grid, a domain per hyperparameter
that encodes it as our BayesOpt does (by index, log-spaced values on a log scale), and the same
simulated clock as our replay (``syne_tune_peers._same_clock_as_ours``: no real decision time,
no start/stop delays). A run stops at 25% of the grid's compute (``--budget``) or when the
method has nothing left to run (a promotion method on a finite grid can end early; the report
names those runs). The regret of its pick at each share of compute is computed exactly as our
suite computes it (``syne_tune_peers.regret_curve``: the best validation value so far, that
configuration's value at the epochs it trained), and each run is written as a row of our
suite's ``rows.jsonl`` format, so our suite's statistics and report apply unchanged.

A Syne Tune 0.13 bug worked around: with ``restrict_configurations``, MOBSTER and HyperTune
raise ``ValueError: not enough values to unpack`` once every grid configuration has been
tried, and DyHPO reaches the same code: ``RandomFromSetCandidateGenerator.
generate_candidates_en_bulk`` counts the resource attribute in the space's size, so its "grid
exhausted" check never fires. ``_no_unpack_error_when_exhausted`` returns no candidates then.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # small GP matrices: one thread per process is fastest

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

import _common  # noqa: E402,F401  (puts the repository on sys.path)
from syne_tune_peers import N_WORKERS, _same_clock_as_ours, blackbox, regret_curve  # noqa: E402

METHODS = ("syne-random:promotion", "syne-mobster:promotion", "syne-hypertune:promotion", "syne-dyhpo:promotion",
           "syne-mobster:stopping")
# Each peer against the ones of ours it is measured against (the issues' targets: our best at
# small budgets, random:promotion, and from 2% on, bayesopt:fifo; rungbo:promotion, the shape of
# MOBSTER); the first pair is the implementations' check: the same method in two libraries (both
# draw the grid without repeats), the second what Ray's repeating random search costs
PAIRS = (("shuffle:promotion", "syne-random:promotion"), ("random:promotion", "syne-random:promotion"),
         ("bayesopt:promotion", "syne-random:promotion"), ("bayesopt:promotion", "bayesopt:fifo"),
         ("bayesopt:promotion", "random:promotion"), ("rungbo:promotion", "bayesopt:promotion"),
         *((ours, peer) for peer in METHODS[1:]
           for ours in ("random:promotion", "bayesopt:fifo", "bayesopt:promotion", "rungbo:promotion")))
BUDGET = 0.25
MAX_TRIALS = 100_000  # the suite's guard, not a budget
DYHPO_RUNG_INCREMENT = 2  # Syne Tune's default for DyHPO


def _no_unpack_error_when_exhausted() -> None:
    """The 0.13 bug in the module docstring: no candidates once every base configuration is excluded."""
    from syne_tune.optimizer.schedulers.searchers.bayesopt.tuning_algorithms.bo_algorithm_components import \
        RandomFromSetCandidateGenerator as generator

    original = generator.generate_candidates_en_bulk
    if getattr(original, "patched", False):
        return

    def generate(self, num_cands, exclusion_list=None):
        if exclusion_list is not None and all(exclusion_list.contains(c) for c in self.base_set):
            return []
        return original(self, num_cands, exclusion_list)

    generate.patched = True
    generator.generate_candidates_en_bulk = generate


def scheduler_for(method: str, box, table, seed: int):
    from syne_tune.optimizer import baselines

    space = box.configuration_space_with_max_resource_attr("epochs")
    common = dict(metric="val_accuracy", mode="max", resource_attr="epoch", max_resource_attr="epochs",
                  random_seed=seed, search_options={"restrict_configurations": box.all_configurations()})
    asha = dict(grace_period=table.grace_period, reduction_factor=table.reduction_factor)
    name, kind = method.removeprefix("syne-").split(":")
    if name == "random":
        return baselines.ASHA(space, type=kind, **asha, **common)
    if name == "mobster":
        return baselines.MOBSTER(space, type=kind, **asha, **common)
    if name == "hypertune":
        return baselines.HyperTune(space, type=kind, **asha, **common)
    if name == "dyhpo":
        return baselines.DyHPO(space, grace_period=DYHPO_RUNG_INCREMENT, rung_increment=DYHPO_RUNG_INCREMENT, **common)
    raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")


def run_peer(table, method: str, seed: int, budget: float) -> tuple[pd.DataFrame, int]:
    """One run on the simulated clock: the per-report rows in time order, and trials started."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.tuner_callback import TunerCallback

    _no_unpack_error_when_exhausted()
    box = blackbox(table, encoding="ordinal")
    rows: list[dict] = []

    class Collect(TunerCallback):
        def on_trial_result(self, trial, status, result, decision):
            rows.append({"trial_id": trial.trial_id, "epoch": int(result["epoch"]),
                         "val_accuracy": float(result["val_accuracy"]), "time": float(result["st_tuner_time"]),
                         **{k: trial.config[k] for k in box.configuration_space}})

    backend = UserBlackboxBackend(blackbox=box, elapsed_time_attr="elapsed_time", max_resource_attr="epochs",
                                  seed=0, tuner_sleep_time=0, simulator_config=SimulatorConfig(0, 0, 0, 0, 0))
    _same_clock_as_ours(backend)
    limit = budget * table.grid_compute / N_WORKERS  # simulated seconds: N_WORKERS busy the whole time
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SYNETUNE_FOLDER"] = tmp
        tuner = Tuner(trial_backend=backend, scheduler=scheduler_for(method, box, table, seed), n_workers=N_WORKERS,
                      sleep_time=0, stop_criterion=StoppingCriterion(max_wallclock_time=limit,
                                                                     max_num_trials_started=MAX_TRIALS),
                      callbacks=[SimulatorCallback(), Collect()], results_update_interval=1e9,
                      print_update_interval=1e9, save_tuner=False, suffix_tuner_name=True, tuner_name="peer")
        with contextlib.redirect_stdout(io.StringIO()):  # its banners and per-trial lines
            tuner.run()
        started = len(tuner.trial_backend._trial_dict)
    return pd.DataFrame(rows).sort_values(["time", "trial_id"], kind="stable"), started


def peer_row(job) -> dict:
    """One (data set, method, seed): a row in our suite's rows.jsonl format."""
    from experiments.replay.stats import ANYTIME_POINTS
    from experiments.replay.table import load_table

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    folder, task, method, seed, budget = job
    table = load_table(Path(folder) / task)
    started = time.perf_counter()
    frame, n_trials = run_peer(table, method, seed, budget)
    anytime, compute = regret_curve(table, frame, ANYTIME_POINTS, with_compute=True)
    searcher, scheduler = method.split(":")
    return {"task": task, "searcher": searcher, "scheduler": scheduler, "seed": seed,
            "compute_share": compute / table.grid_compute, "n_trials": n_trials,
            "epochs_trained": int(len(frame)), "replay_seconds": time.perf_counter() - started,
            "grid_median_regret_pts": table.objective.regret(table.optimum, table.median_value),
            "anytime_regret_pts": anytime.tolist()}


def read_rows(folder: Path) -> list[dict]:
    """A suite folder's rows, read as the suite reads them (rows.jsonl, or the committed .gz)."""
    from experiments.replay.rows import SuiteError
    from experiments.replay.rows import read_rows as suite_rows

    try:
        return suite_rows(folder)
    except SuiteError as exc:
        raise SystemExit(str(exc)) from exc


def run(args, folder: Path, tasks: list[str], row_of=None) -> None:
    """Every (task, method, seed) not in ``args.out``'s rows yet, over ``args.workers`` processes, each row
    appended as it ends. ``row_of``: what runs one job (this module's ``peer_row``; optuna_peers passes its own)."""
    from multiprocessing import get_context

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "rows.jsonl"
    done = {(r["task"], f"{r['searcher']}:{r['scheduler']}", r["seed"]) for r in
            (read_rows(out) if path.is_file() else [])}
    jobs = [(str(folder), task, method, seed, args.budget) for seed in range(args.seeds)
            for method in args.methods.split(",") for task in tasks if (task, method, seed) not in done]
    print(f"{len(jobs)} runs to do ({len(done)} in {path} already), {args.workers} processes", flush=True)
    begun = time.perf_counter()
    with get_context("fork").Pool(args.workers) as pool, open(path, "a") as sink:
        for i, row in enumerate(pool.imap_unordered(row_of or peer_row, jobs, chunksize=1), 1):
            sink.write(json.dumps(row) + "\n")  # as each ends: an interrupted run keeps what it finished
            sink.flush()
            print(f"[{i}/{len(jobs)} {time.perf_counter() - begun:.0f}s] {row['task']} {row['searcher']}:"
                  f"{row['scheduler']} seed {row['seed']}: {row['replay_seconds']:.1f}s, {row['n_trials']} trials, "
                  f"{100 * row['compute_share']:.1f}% of the grid's compute", flush=True)


def report(args, folder: Path, tasks: list[str]) -> pd.DataFrame:
    """Peers and ours in one frame, through the suite's own statistics and report."""
    from core import records
    from experiments.replay import suite_report
    from experiments.replay.suite import cross_dataset, pairwise

    peers = pd.DataFrame(read_rows(Path(args.out)))
    ours = pd.concat([pd.DataFrame(read_rows(Path(o))) for o in args.ours]) if args.ours else peers.iloc[:0]
    ours = ours.drop_duplicates(["task", "searcher", "scheduler", "seed"])
    rows = pd.concat([ours, peers], ignore_index=True)
    rows["task"] = rows["task"].astype(str)
    # the same data sets and seeds on both sides: a data set's value is the median over the same n seeds
    rows = rows[rows["task"].isin(tasks) & (rows["seed"] < args.seeds)].reset_index(drop=True)
    complete = rows.groupby(["searcher", "scheduler"])["task"].transform("size") == len(tasks) * args.seeds
    dropped = sorted(set((rows["searcher"] + ":" + rows["scheduler"])[~complete]))
    rows = rows[complete].reset_index(drop=True)
    cross = cross_dataset(rows)
    pairs = pairwise(rows, PAIRS)
    settings = {"n_datasets": len(tasks), "n_seeds": args.seeds, "budget": args.budget, "max_trials": MAX_TRIALS,
                "max_concurrent": N_WORKERS, "half": None, "tables": str(folder)}
    early = suite_report.ended_early(rows, settings)
    text = suite_report.markdown(cross, settings, pairs, early).replace("# LCBench suite", "# Syne Tune 0.13 peers", 1)
    notes = ["", "Methods named syne-* are Syne Tune 0.13's (benchmarks/syne_tune_013_peers.py says how each ran); the "
             f"others are ours, from {', '.join(args.ours or [])}, restricted to seeds 0-{args.seeds - 1}.",
             "Left out (not every data set x seed present): " + (", ".join(dropped) or "none")]
    cost = peers.assign(method=peers["searcher"] + ":" + peers["scheduler"]).groupby("method")["replay_seconds"]
    notes += ["", "Seconds per run (this machine, one process each): "
              + "; ".join(f"{m} median {s.median():.1f}, max {s.max():.1f}" for m, s in cost)]
    out = Path(args.out)
    records.write_text(out / "summary.md", text + "\n".join(notes) + "\n")
    records.write_csv(out / "summary.csv", list(cross.columns), cross.to_dict("records"))
    records.write_csv(out / "pairs.csv", list(pairs.columns), pairs.to_dict("records"))
    try:
        (out / "plots").mkdir(exist_ok=True)
        suite_report.plot(rows, out / "plots" / "lcbench_suite.png")  # the name summary.md links
    except ImportError:
        print("(no matplotlib here: no plot; the tables are complete)")
    print(text + "\n".join(notes))
    return cross


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for rows.jsonl (resumed: what is there is not rerun)")
    parser.add_argument("--tables", default=None, help="LCBench tables (default: the suite's cache)")
    parser.add_argument("--datasets", type=int, default=34, help="the first N data sets by name")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--report", action="store_true", help="only the comparison, from the rows already there")
    parser.add_argument("--ours", action="append", help="a suite folder of ours (rows.jsonl or rows.jsonl.gz)")
    args = parser.parse_args(argv)
    from experiments.replay import suite

    folder = Path(args.tables) if args.tables else suite.default_tables_dir()
    tasks = suite.tables_of(folder)[:args.datasets] if folder.is_dir() else []
    if not tasks:
        print(f"no LCBench tables in {folder}: python -m experiments.replay build-lcbench")
        return 2
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        print(f"unknown method(s) {', '.join(sorted(unknown))}: one of {', '.join(METHODS)}")
        return 2
    if not args.report:
        try:
            import syne_tune  # noqa: F401
        except ImportError:
            print('syne-tune 0.13 is not installed here: pip install "syne-tune[gpsearchers,sklearn]==0.13.0" '
                  "in a virtual environment of its own (module docstring)")
            return 2
        run(args, folder, tasks)
    report(args, folder, tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
