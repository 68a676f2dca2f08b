"""Syne Tune's methods on our LCBench replay tables, next to ours: the peer run of issue 13.

    pip install -e ".[bench]"                  # optional: syne-tune, the benchmark's only extra dependency
    python benchmarks/syne_tune_peers.py --ours <suite out folder> --datasets 8 --seeds 3

What it does, per data set (the first ``--datasets`` of the 34 tables, sorted by name) and seed:

1. Agreement check. Our replay runs random:fifo and random:asha; Syne Tune's simulator is then
   given the same trial sequence (``points_to_evaluate``, in our start order) with FIFO and with
   its ASHA using Ray's rung rule (``RayRungRule``: stop below the rung's 1/rf quantile of the
   values recorded before; Syne Tune's own rule stops only when more than 1/rf of the values,
   the new one included, are strictly better, more lenient with ties and few values). Both must
   train every trial for the same number of epochs; any difference is printed and counted.
2. Peers. Syne Tune's RandomSearch (FIFO), ASHA, BOHB (ASHA + KDE) and ASHA-BORE (ASHA with a
   classifier-based model per rung), its model-based multi-fidelity methods that install without
   downloads, run on the same table with the same concurrency (4), the same compute budget
   (``--budget`` of the grid's compute, at most 1,000 trials) and their own rung rule.
   Normalized regret at 10% and 25% of the grid's compute (0 = grid best, 1 = grid median) is
   printed next to ours, read from the suite's seeds.csv (``--ours``) for the same data sets and
   seeds, with Wilcoxon's test across data sets for each Syne Tune method against its counterpart
   of ours (``PAIRS``). Data sets run over ``--workers`` processes.

What of Syne Tune's simulator is switched off, and why: its backend charges the scheduler's
real decision time (time spent in our process between backend calls) to the simulated clock,
and adds 0.05 s delays at trial start, result, stop and completion. Our replay charges neither:
it measures a method's sample efficiency in training compute, and a decision's cost on this
2-core machine says nothing about its cost next to a GPU job. Both are set to zero here
(``_same_clock_as_ours``, ``SimulatorConfig(0, ...)``), so the two simulators run on the same clock.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import _common  # noqa: F401  (puts the repository on sys.path)
from analysis.stats import wilcoxon

FRACTIONS = (0.10, 0.25)
N_WORKERS = 4  # the replay tables' concurrency
MAX_TRIALS = 1000


def _ordinal(values):
    """A grid's value list as Syne Tune's ordinal domain, encoded as our BayesOpt encodes it
    (searchers/bayesopt.py): by position, so values spaced by a constant factor on a log scale."""
    from syne_tune.config_space import logordinal, ordinal

    values = sorted(values)
    ratios = np.array(values[1:]) / np.array(values[:-1]) if min(values) > 0 else None
    geometric = ratios is not None and len(values) > 2 and np.allclose(ratios, ratios[0])
    return logordinal(values) if geometric else ordinal(values, kind="nn")


def blackbox(table, encoding: str = "choice"):
    """The table as a Syne Tune ``BlackboxTabular``: val_accuracy and cumulative seconds per epoch.
    ``encoding``: "choice" (categorical domains) or "ordinal" (``_ordinal``, for model-based peers)."""
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    searched = [name for name, values in table.space.items() if len(values) > 1]
    keys = list(table.curves)
    epochs = len(table.curves[keys[0]][0].epoch_seconds)
    evaluations = np.zeros((len(keys), 1, epochs, 2))
    for i, key in enumerate(keys):
        (curve,) = table.curves[key][:1]  # LCBench tables: one deterministic curve per configuration
        evaluations[i, 0, :, 0] = curve.val["val_accuracy"]
        evaluations[i, 0, :, 1] = np.cumsum(curve.epoch_seconds)
    hyperparameters = pd.DataFrame([table.config_of(key) for key in keys])[searched]
    domain = _ordinal if encoding == "ordinal" else (lambda values: choice(list(values)))
    space = {name: domain(table.space[name]) for name in searched}
    return BlackboxTabular(hyperparameters=hyperparameters, configuration_space=space,
                           fidelity_space={"epoch": randint(1, epochs)}, objectives_evaluations=evaluations,
                           fidelity_values=np.arange(1, epochs + 1), objectives_names=["val_accuracy", "elapsed_time"])


def _same_clock_as_ours(backend) -> None:
    """Syne Tune's simulator advances its clock by the real time spent outside the backend (the
    scheduler's decisions), by the tuner's sleep, and by 1 ms at every stop
    (``advance_to(time_stop + 1e-3)`` in simulator_backend.py); ours does none of these (module
    docstring). So: no real time, and each fetch jumps the clock to the next event, which is
    what our replay's event heap does; a stop leaves the clock where it was."""
    backend._advance_by_outside_time = lambda: None
    keeper, fetch, stop = backend._time_keeper, backend.fetch_status_results, backend._stop_or_pause_trial

    def fetch_at_next_event(trial_ids):
        heap = backend._simulator_state.event_heap
        if heap and not backend._next_results_to_fetch and heap[0][0] > keeper.time():
            keeper.advance_to(heap[0][0])
        return fetch(trial_ids)

    def stop_without_bump(trial_id, status):
        now, advance_to = keeper.time(), keeper.advance_to
        keeper.advance_to = lambda t: advance_to(now if abs(t - now - 1e-3) < 1e-9 else t)
        try:
            stop(trial_id, status)
        finally:
            keeper.advance_to = advance_to

    backend.fetch_status_results = fetch_at_next_event
    backend._stop_or_pause_trial = stop_without_bump


class RayRungRule:
    """Ray's ASHA rung rule (ray/tune/schedulers/async_hyperband.py, _Bracket.on_result), for
    Syne Tune's rung system: at a rung, stop a trial whose value is below the (1 - 1/rf) quantile
    of the values recorded there before it (np.nanpercentile, linear interpolation), in Ray's arithmetic."""

    @staticmethod
    def patch(scheduler) -> None:
        for bracket in scheduler.brackets:
            bracket.on_result = RayRungRule._on_result.__get__(bracket)

    def _on_result(self, trial_id, cur_iter, metrics):
        from syne_tune.optimizer.scheduler import SchedulerDecision

        action = SchedulerDecision.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter < milestone or trial_id in recorded:
                continue
            # Syne Tune records metric * -1 (we maximize); negated back, the rewards are exactly Ray's,
            # and the cutoff is computed in Ray's own arithmetic: the 1/rf quantile of the negated
            # values differs from it in the last bit, which on 189866 (random:asha, seed 0) stopped
            # 5 of 997 trials tied with the cutoff in one simulator and not the other
            reward = -list(metrics.values())[0]
            if recorded:
                cutoff = np.nanpercentile([-list(v.values())[0] for v in recorded.values()], (1 - 1 / self.rf) * 100)
                if reward < cutoff:  # Ray: stop below the rung's (1 - 1/rf) quantile
                    action = SchedulerDecision.STOP
            recorded[trial_id] = metrics
            break
        return action


def run_syne(table, method: str, seed: int, budget: float, points=None, ray_rule=False):
    """One Syne Tune run on the simulated clock: the per-report rows (time order) and epochs per trial."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer import baselines
    from syne_tune.tuner_callback import TunerCallback

    box = blackbox(table)
    epochs = len(box.fidelity_values)
    common = dict(config_space=box.configuration_space, metric="val_accuracy", do_minimize=False, random_seed=seed)
    asha = dict(time_attr="epoch", max_t=epochs, grace_period=table.grace_period,
                reduction_factor=table.reduction_factor)
    if method == "random:fifo":
        scheduler = baselines.RandomSearch(config_space=box.configuration_space, metrics=["val_accuracy"],
                                           do_minimize=False, random_seed=seed, points_to_evaluate=points)
    elif method == "random:asha":
        scheduler = baselines.ASHA(**common, **asha, points_to_evaluate=points)
    elif method == "bohb:asha":
        scheduler = baselines.BOHB(**common, **asha)
    elif method == "bore:asha":
        scheduler = baselines.ASHABORE(**common, **asha)
    else:
        raise ValueError(f"unknown Syne Tune method {method!r}")
    if ray_rule and hasattr(scheduler, "brackets"):
        RayRungRule.patch(scheduler)
    rows: list[dict] = []

    finished: set = set()

    class Collect(TunerCallback):
        def on_trial_complete(self, trial, result):
            finished.add(trial.trial_id)

        def on_trial_result(self, trial, status, result, decision):
            if decision == "STOP":
                finished.add(trial.trial_id)
            rows.append({"trial_id": trial.trial_id, "epoch": int(result["epoch"]),
                         "val_accuracy": float(result["val_accuracy"]), "time": float(result["st_tuner_time"]),
                         **{k: trial.config[k] for k in box.configuration_space}})

    backend = UserBlackboxBackend(blackbox=box, elapsed_time_attr="elapsed_time", seed=0, tuner_sleep_time=0,
                                  simulator_config=SimulatorConfig(0, 0, 0, 0, 0))
    _same_clock_as_ours(backend)
    limit = budget * table.grid_compute / N_WORKERS  # simulated seconds: N_WORKERS busy the whole time
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SYNETUNE_FOLDER"] = tmp
        tuner = Tuner(trial_backend=backend, scheduler=scheduler, n_workers=N_WORKERS, sleep_time=0,
                      stop_criterion=StoppingCriterion(max_wallclock_time=limit, max_num_trials_started=MAX_TRIALS),
                      callbacks=[SimulatorCallback(), Collect()], results_update_interval=1e9,
                      print_update_interval=1e9, save_tuner=False, suffix_tuner_name=True, tuner_name="peer")
        with contextlib.redirect_stdout(io.StringIO()):  # its banners and per-trial lines
            tuner.run()
    frame = pd.DataFrame(rows).sort_values(["time", "trial_id"], kind="stable")
    frame["finished"] = frame["trial_id"].isin(finished)
    return frame


def regret_curve(table, frame: pd.DataFrame, fractions=FRACTIONS, with_compute: bool = False):
    """Regret (points) of the incumbent at each share of the grid's compute: the trial with the best
    validation accuracy so far (core.rules' selection, earlier start breaking ties) and the value of
    its configuration at the epochs it trained; compute counts finished epochs. Before the first
    result the regret of a value of 0, as our suite counts it (experiments.replay.stats.regret_at).
    ``with_compute``: also the compute the run spent in all."""
    from core.rules import selection_key

    searched = [n for n, v in table.space.items() if len(v) > 1]
    constants = {n: v[0] for n, v in table.space.items() if len(v) == 1}
    best_acc: dict = {}
    incumbent, compute, out = None, 0.0, []
    marks = [f * table.grid_compute for f in fractions]
    for row in frame.to_dict("records"):
        key = table.key({**constants, **{n: row[n] for n in searched}})
        compute += float(table.curves[key][0].epoch_seconds[row["epoch"] - 1])
        while marks and compute > marks[0]:
            out.append(incumbent)
            marks.pop(0)
        trial = row["trial_id"]
        best_acc[trial] = max(best_acc.get(trial, -np.inf), row["val_accuracy"])
        candidate = (selection_key(best_acc[trial], row["epoch"], trial, table.objective), key, row["epoch"])
        if incumbent is None or candidate[0] > incumbent[0]:
            incumbent = candidate
    out += [incumbent] * len(marks)
    regret = np.array([table.objective.regret(table.optimum, 0.0 if pick is None else table.value(*pick[1:]))
                       for pick in out])
    return (regret, compute) if with_compute else regret


def agreement(table, seed: int, budget: float) -> list[str]:
    """Our replay's random:fifo and random:asha trial sequences through Syne Tune's simulator:
    the epochs each trial trained must match (see the module docstring); the differences."""
    from experiments.replay.simulator import replay_method

    searched = [n for n, v in table.space.items() if len(v) > 1]
    problems = []
    for method in ("random:fifo", "random:asha"):
        ours = replay_method(table, *method.split(":"), seed, num_samples=MAX_TRIALS, budget=budget)
        ordered = sorted(ours.trials, key=lambda t: t["start"])
        points = [{n: table.config_of(t["key"])[n] for n in searched} for t in ordered]
        frame = run_syne(table, method, seed, budget, points=points, ray_rule=True)
        theirs = frame[frame["finished"]].groupby("trial_id")["epoch"].max()
        # trials finished in both (the budget cuts the two runs at slightly different moments)
        both = [i for i, t in enumerate(ordered) if t["status"] is not None and i in theirs.index]
        n = len(both)
        mismatched = [i for i in both if ordered[i]["epochs"] != int(theirs[i])]
        if mismatched:
            problems.append(f"{table.task} seed {seed} {method}: {len(mismatched)} of {n} trials trained different "
                            f"epochs (first: trial {mismatched[0]}, ours {ordered[mismatched[0]]['epochs']}, "
                            f"Syne Tune {int(theirs.get(mismatched[0], -1))})")
        else:
            print(f"  agree: {table.task} seed {seed} {method}: {n} trials, same epochs each", flush=True)
    return problems


def peer_task(job):
    """Every seed of one data set: the agreement check, then each Syne Tune method (a worker's job)."""
    from experiments.replay.table import load_table

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    folder, task, seeds, methods, budget = job
    table = load_table(Path(folder) / task)
    worst = 100.0 * (table.optimum - table.median_value)
    rows, problems = [], []
    for seed in seeds:
        problems += agreement(table, seed, budget)
        for method in methods:
            started = time.perf_counter()
            regret = regret_curve(table, run_syne(table, method, seed, budget))
            rows.append({"task": task, "seed": seed, "method": f"syne:{method}",
                         **{f"norm_{round(f * 100)}": r / worst for f, r in zip(FRACTIONS, regret)},
                         "seconds": time.perf_counter() - started})
            print(f"  {task} seed {seed} syne:{method}: normalized regret "
                  + ", ".join(f"@{round(f * 100)}% {r / worst:.3f}" for f, r in zip(FRACTIONS, regret)), flush=True)
    return task, rows, problems


# Each Syne Tune method against the one of ours it is the counterpart of (same scheduler family)
PAIRS = (("ours:rungbo:asha", "syne:bohb:asha"), ("ours:rungbo:asha", "syne:bore:asha"),
         ("ours:random:asha", "syne:random:asha"), ("ours:random:fifo", "syne:random:fifo"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=None, help="LCBench tables (default: the suite's cache)")
    parser.add_argument("--ours", default=None, help="the suite's --out folder (seeds.csv) for our side")
    parser.add_argument("--datasets", type=int, default=8, help="the first N data sets by name (default 8)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--methods", default="random:fifo,random:asha,bohb:asha,bore:asha")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes, one data set each")
    parser.add_argument("--save", default=None,
                        help="a CSV for Syne Tune's rows and the agreement check, written after every data set; "
                             "data sets already in it are not run again")
    args = parser.parse_args(argv)
    try:
        import syne_tune  # noqa: F401
    except ImportError:
        print("syne-tune is not installed: pip install syne-tune (an optional benchmark dependency)")
        return 2
    from experiments.replay import suite
    from experiments.replay.simulator import map_jobs

    folder = Path(args.tables) if args.tables else suite.default_tables_dir()
    tasks = sorted(p.name for p in folder.iterdir() if (p / "run.json").is_file())[:args.datasets]
    if not tasks:
        print(f"no LCBench tables in {folder}: python -m experiments.replay build-lcbench")
        return 2
    problems, rows = [], []
    saved = Path(args.save) if args.save else None
    done: set = set()
    if saved and saved.is_file():  # data sets finished by an earlier (interrupted) run are not run again
        previous = pd.read_csv(saved, dtype={"task": str})
        problems = list(previous["problem"].dropna()) if "problem" in previous else []
        rows = previous[previous["method"].notna()].drop(columns=["problem"], errors="ignore").to_dict("records")
        done = {str(r["task"]) for r in rows}
    jobs = [(str(folder), task, range(args.seeds), args.methods.split(","), args.budget) for task in tasks
            if task not in done]
    for _, task_rows, task_problems in map_jobs(peer_task, jobs, args.workers, ordered=False):
        rows += task_rows
        problems += task_problems
        if saved:  # after every data set, so an interrupted run keeps what it finished
            pd.concat([pd.DataFrame(rows), pd.DataFrame({"problem": problems})]).to_csv(saved, index=False)
    tasks = sorted({str(r["task"]) for r in rows})
    frame = pd.DataFrame(rows)
    if args.ours:
        ours = pd.read_csv(Path(args.ours) / "seeds.csv")
        ours = ours[ours["task"].astype(str).isin(tasks) & (ours["seed"] < args.seeds)]
        for (s, c), group in ours.groupby(["searcher", "scheduler"]):
            anytime = None  # seeds.csv has the regret at the suite's shares
            for f in FRACTIONS:
                column = f"regret_pts_at_{round(f * 100)}pct"
                if column not in group:
                    anytime = f"missing {column}"
            if anytime:
                continue
            worst = group["grid_median_regret_pts"]
            frame = pd.concat([frame, pd.DataFrame({"task": group["task"].astype(str), "seed": group["seed"],
                                                    "method": f"ours:{s}:{c}",
                                                    **{f"norm_{round(f * 100)}": group[f"regret_pts_at_{round(f * 100)}pct"]
                                                       / worst for f in FRACTIONS}})])
    per_task = frame.groupby(["method", "task"])[[f"norm_{round(f * 100)}" for f in FRACTIONS]].median()
    summary = per_task.groupby("method").agg(["mean", lambda x: np.percentile(x, 25), lambda x: np.percentile(x, 75)])
    print(f"\nnormalized regret (0 = grid best, 1 = grid median): mean [25th, 75th] over data sets of "
          f"the median over {args.seeds} seeds; budget {args.budget:.0%} of the grid's compute, {N_WORKERS} workers")
    for method, row in summary.iterrows():
        cells = [f"@{round(f * 100)}%: {row[(f'norm_{round(f * 100)}', 'mean')]:.3f} "
                 f"[{row[(f'norm_{round(f * 100)}', '<lambda_0>')]:.3f}, {row[(f'norm_{round(f * 100)}', '<lambda_1>')]:.3f}]"
                 for f in FRACTIONS]
        n = per_task.loc[method].shape[0]  # data sets this method ran on (a --methods subset may differ)
        print(f"  {method:24s} " + "  ".join(cells) + f"  (n = {n} data sets)")
    medians = {f: per_task[f"norm_{round(f * 100)}"] for f in FRACTIONS}
    print(f"\npaired across data sets (median over seeds per data set; Wilcoxon, two-sided; r < 0: the first lower)")
    for a, b in PAIRS:
        if a not in per_task.index.get_level_values(0) or b not in per_task.index.get_level_values(0):
            continue
        cells = []
        for f in FRACTIONS:
            x, y = medians[f][a].align(medians[f][b], join="inner")
            p, r = wilcoxon(x, y)
            cells.append(f"@{round(f * 100)}%: n={len(x)}, p={p:.3g}, r={r:.2f}, first lower in {int((x < y).sum())}, "
                         f"ties {int((x == y).sum())}")
        print(f"  {a} vs {b}: " + "; ".join(cells))
    print(f"\nagreement check: {len(problems)} disagreement(s)")
    for line in problems:
        print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
