"""Replay benchmark: rerun every searcher and scheduler many times on a recorded grid run.

A grid run with the fifo scheduler has measured every configuration's whole learning curve
(``curves.csv``: validation metrics and seconds per epoch). Replaying those curves, as the
tabular benchmarks do (HPOBench, LCBench, NAS-Bench-201; Syne Tune's simulator backend),
lets each method run over many seeds in seconds::

    python -m experiments.replay <grid run folder> --seeds 20 [--methods ...] [--out <folder>]
    python -m experiments.replay --builtin breast_cancer --out <folder>

How a replay runs (``replay_method``):

* The searchers and schedulers are the objects real runs use (``searchers.SEARCHERS`` and
  ``SCHEDULERS``), wrapped as ``tune.run`` wraps them (a ``Searcher`` in a
  ``ConcurrencyLimiter`` inside a ``SearchGenerator``; no searcher: a
  ``BasicVariantGenerator``), and they create Ray Tune ``Trial`` objects the same way.
* Ray's ``TuneController`` is replaced by a discrete-event loop on a simulated clock: each
  trial's epoch takes its recorded ``epoch_seconds``; at most ``max_concurrent`` trials run at
  once (the original run's concurrency); results reach the scheduler and searcher in
  simulated-time order, with the controller's call order (a ``done`` result stops the trial
  without ``on_trial_result``; a ``STOP`` decision is not shown to the searcher's
  ``on_trial_result``; both then get ``on_trial_complete`` with the last result; freed slots
  are refilled). Nothing reads the machine's clock, so the decisions depend only on simulated
  time, and a replay is a pure function of (table, method, seed).
* Where the grid was run with several training seeds, each replayed trial draws one of them
  (seeded) and follows that seed's curve.
* A trial reports exactly the recorded validation numbers; the test columns are never shown
  to searchers or schedulers, only used to score what a method selects.

Statistics (``summarize``), over replay seeds, per method: regret to the grid's best
validation accuracy (accuracy points) at 5, 10, 25 and 50% of the grid's compute (the sum of
all its configurations' epoch seconds); the compute needed to come within 0.5 points; the
test accuracy of the selected model against the grid's selection; a Wilcoxon signed-rank
test against random search (fifo) paired by seed, with the matched-pairs rank-biserial
correlation as effect size. The "value" of a model is the mean over the table's training
seeds of its best validation accuracy up to the epochs it trained (with one training seed:
exactly what it reported), so the regret is never negative.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import records
from experiments.records import FAILED

REGRET_FRACTIONS = (0.05, 0.10, 0.25, 0.50)  # shares of the grid's compute
REACH_POINTS = 0.5  # accuracy points: "within 0.5 points of the grid's best"
REFERENCE = ("random", "fifo")  # the paired test's baseline
BUILTIN = Path(__file__).resolve().parent / "tables"  # shipped recorded tables: tables/<task>/
ANYTIME_POINTS = np.geomspace(0.005, 1.0, 120)  # compute fractions of the anytime curves


class ReplayError(ValueError):
    """The table cannot be replayed; the message is one line saying what is missing."""


# --- the recorded table --------------------------------------------------------------------
@dataclass
class Curve:
    """One configuration trained with one training seed: per-epoch arrays (index 0 = epoch 1)."""

    seed: int
    val: dict[str, np.ndarray]  # val_accuracy, val_f1, val_auc, val_loss
    epoch_seconds: np.ndarray
    test: dict[str, np.ndarray] | None  # test_* where the run recorded them

    @property
    def best_epoch(self) -> np.ndarray:
        """best_epoch[e-1]: the epoch (1-based) whose weights a trial that trained e epochs
        keeps: the first one with the highest validation accuracy (EpochTrainable's rule)."""
        acc = self.val["val_accuracy"]
        running = np.maximum.accumulate(acc)
        first = np.zeros(len(acc), dtype=int)
        for e in range(1, len(acc)):
            first[e] = e if acc[e] > running[e - 1] else first[e - 1]
        return first + 1


@dataclass
class Table:
    """A grid run's learning curves, keyed by configuration, with the run's settings."""

    task: str
    space: dict[str, list]  # hyperparameter -> its grid values
    epochs_param: str
    metric: str
    mode: str
    grace_period: int
    reduction_factor: int
    max_concurrent: int
    num_samples: int
    curves: dict[tuple, list[Curve]]  # configuration key -> one curve per training seed
    source: str = ""
    budget: str = "full"  # the recorded run's budget (smoke or full)
    _value: dict = field(default_factory=dict, repr=False)

    def key(self, config: dict) -> tuple:
        """A configuration's key: its value of every hyperparameter, as in the space."""
        return _key(self.space, config)

    def config_of(self, key: tuple) -> dict:
        return dict(zip(self.space, key))

    def task_spec(self):
        """A TaskSpec of the table's space and ASHA settings, for the searcher factories."""
        from trainables.base import TaskSpec

        return TaskSpec(name=self.task, trainable=object, space={k: tuple(v) for k, v in self.space.items()},
                        metric=self.metric, mode=self.mode, epochs_param=self.epochs_param,
                        grace_period=self.grace_period, reduction_factor=self.reduction_factor)

    def value(self, key: tuple, epochs: int) -> float:
        """A model's worth: mean over training seeds of the best validation accuracy within
        ``epochs`` epochs (the weights a trial keeps)."""
        cached = self._value.get(key)
        if cached is None:
            cached = np.mean([np.maximum.accumulate(c.val["val_accuracy"]) for c in self.curves[key]], axis=0)
            self._value[key] = cached
        return float(cached[epochs - 1])

    @functools.cached_property
    def optimum(self) -> float:
        """The grid's best value (every configuration trained to its own epoch count)."""
        return max(self.value(key, len(curves[0].epoch_seconds)) for key, curves in self.curves.items())

    @functools.cached_property
    def grid_compute(self) -> float:
        """Seconds of the whole grid: every configuration's epochs, mean over training seeds."""
        return float(sum(np.mean([c.epoch_seconds.sum() for c in curves]) for curves in self.curves.values()))

    @property
    def has_test(self) -> bool:
        return all(c.test is not None for curves in self.curves.values() for c in curves)

    def grid_selection_test_accuracy(self) -> float | None:
        """Test accuracy of the grid's own pick (select_trial's rule), mean over training seeds."""
        if not self.has_test:
            return None
        accuracies = []
        for i in range(len(next(iter(self.curves.values())))):
            best = max(self.curves, key=lambda k: (self.curves[k][i].val["val_accuracy"].max(),
                                                   len(self.curves[k][i].epoch_seconds)))
            curve = self.curves[best][i]
            accuracies.append(curve.test["test_accuracy"][curve.best_epoch[-1] - 1])
        return float(np.mean(accuracies))


def _key(space: dict[str, list], config: dict) -> tuple:
    return tuple(_match(name, config[name], values) for name, values in space.items())


def _match(name: str, value, values: list):
    """The space value equal to ``value`` (CSV reads 0.001 back as a float, 16 as an int)."""
    for v in values:
        if v == value or str(v) == str(value):
            return v
        try:
            if isinstance(v, (int, float)) and math.isclose(float(value), float(v), rel_tol=1e-9):
                return v
        except (TypeError, ValueError):
            pass
    raise ReplayError(f"{name}={value!r} is not in the recorded space ({', '.join(map(str, values))})")


def _read_table_files(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    if not folder.is_dir():
        raise ReplayError(f"{str(folder)!r} is not a folder; expected a run folder holding a grid run")
    curves_path = next((folder / n for n in ("curves.csv", "curves.csv.gz") if (folder / n).is_file()), None)
    missing = [n for n, ok in (("run.json", (folder / "run.json").is_file()), ("trials.csv", (folder / "trials.csv").is_file()),
                               ("curves.csv", curves_path is not None)) if not ok]
    if missing:
        raise ReplayError(f"{str(folder)!r} is not a run folder with a grid run: no {', '.join(missing)}")
    try:
        info = json.loads((folder / "run.json").read_text())
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{folder / 'run.json'} is not valid JSON ({exc.msg})") from None
    # pandas >= 3 parses floats exactly (round trip); tests check the replayed numbers against csv's
    return info, pd.read_csv(folder / "trials.csv"), pd.read_csv(curves_path)


def load_table(folder) -> Table:
    """The grid (fifo) run in ``folder`` as a Table; ReplayError names what is missing."""
    folder = Path(folder)
    info, trials, curves = _read_table_files(folder)
    resolved = info.get("resolved", {})
    if "space" not in resolved:
        raise ReplayError(f"{folder / 'run.json'} has no resolved search space; was it written by run_all.py?")
    task = info.get("spec", {}).get("task", "?")
    epochs_param = resolved.get("epochs_param")
    if epochs_param is None:  # run folders written before run.json carried it
        from trainables import get_task

        epochs_param = get_task(task).epochs_param
    return table_from_frames(trials, curves, space=resolved["space"], task=task, epochs_param=epochs_param,
                             metric=resolved.get("metric", "val_accuracy"), mode=resolved.get("mode", "max"),
                             grace_period=int(resolved.get("grace_period", 1)),
                             reduction_factor=int(resolved.get("reduction_factor", 3)),
                             max_concurrent=int(resolved.get("max_concurrent", 1)),
                             num_samples=int(resolved.get("num_samples", 1)), source=str(folder),
                             budget=info.get("spec", {}).get("budget", "full"))


def table_from_frames(trials: pd.DataFrame, curves: pd.DataFrame, *, space: dict, task: str, epochs_param: str,
                      metric: str = "val_accuracy", mode: str = "max", grace_period: int = 1,
                      reduction_factor: int = 3, max_concurrent: int = 1, num_samples: int = 1,
                      source: str = "", budget: str = "full") -> Table:
    """A Table from trials.csv and curves.csv rows of a grid run with fifo (every seed of it)."""
    space = {name: list(values) for name, values in space.items()}
    grid_trials = trials[(trials["searcher"] == "grid") & (trials["scheduler"] == "fifo")]
    if grid_trials.empty:
        methods = sorted(set(zip(trials["searcher"], trials["scheduler"])))
        raise ReplayError(f"{source or 'the table'} holds no grid run with the fifo scheduler (it has "
                          f"{', '.join(f'{s}:{c}' for s, c in methods) or 'no trials'}); record one with "
                          "run_all.py --methods grid:fifo --record-test-curves")
    config_columns = [f"config/{name}" for name in space]
    absent = [c for c in config_columns if c not in grid_trials.columns]
    if absent:
        raise ReplayError(f"trials.csv has no column {absent[0]} for the recorded space")
    for column in ("epoch", "val_accuracy", "epoch_seconds"):
        if column not in curves.columns:
            raise ReplayError(f"curves.csv has no {column} column")
    has_test = "test_accuracy" in curves.columns and curves["test_accuracy"].notna().any()
    grid_curves = curves[(curves["searcher"] == "grid") & (curves["scheduler"] == "fifo")]
    by_trial = {(seed, tid): frame.sort_values("epoch") for (seed, tid), frame in grid_curves.groupby(["seed", "trial_id"])}
    size = math.prod(len(v) for v in space.values())
    table: dict[tuple, list[Curve]] = {}
    for seed, seed_trials in grid_trials.groupby("seed", sort=True):
        seen = set()
        for trial in seed_trials.to_dict("records"):
            config = {name: trial[f"config/{name}"] for name in space}
            key = _key(space, config)
            own_epochs = int(float(dict(zip(space, key))[epochs_param]))
            frame = by_trial.get((seed, trial["trial_id"]))
            epochs = [] if frame is None else [int(e) for e in frame["epoch"]]
            if trial["status"] == FAILED or epochs != list(range(1, own_epochs + 1)):
                got = f"epochs 1..{max(epochs)}" if epochs else "no epochs"
                raise ReplayError(f"grid run seed {seed}: trial {trial['trial_id']} ({_describe(config)}) has {got} "
                                  f"of {own_epochs} in curves.csv; a replay table needs every epoch")
            if frame[["val_accuracy", "epoch_seconds"]].isna().any().any():
                raise ReplayError(f"grid run seed {seed}: trial {trial['trial_id']} ({_describe(config)}) has epochs "
                                  "without val_accuracy or epoch_seconds in curves.csv")
            seen.add(key)
            table.setdefault(key, []).append(Curve(
                seed=int(seed),
                val={m: frame[m].to_numpy(dtype=float) for m in records.CURVE_COLUMNS
                     if m.startswith("val_") and m in frame},
                epoch_seconds=frame["epoch_seconds"].to_numpy(dtype=float),
                test=({m: frame[m].to_numpy(dtype=float) for m in records.TEST_CURVE_METRICS if m in frame}
                      if has_test else None)))
        if len(seen) < size:
            missing = next(k for k in itertools.product(*space.values()) if k not in seen)
            raise ReplayError(f"grid run seed {seed} is missing {size - len(seen)} of {size} configurations, e.g. "
                              f"{_describe(dict(zip(space, missing)))}")
    return Table(task=task, space=space, epochs_param=epochs_param, metric=metric, mode=mode,
                 grace_period=grace_period, reduction_factor=reduction_factor, max_concurrent=max_concurrent,
                 num_samples=num_samples, curves=table, source=source, budget=budget)


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


# --- one replayed method -------------------------------------------------------------------
class ReplayedTrial:
    """Stands in for a trainable: each ``step()`` reports the next recorded epoch, exactly as
    recorded (validation numbers only), and ``done`` at the configuration's own epoch count."""

    def __init__(self, curve: Curve, epochs: int):
        self.curve = curve
        self.epochs = epochs
        self.epoch = 0
        self.best = -math.inf

    def next_seconds(self) -> float:
        return float(self.curve.epoch_seconds[self.epoch])

    def step(self) -> dict:
        i = self.epoch
        self.epoch += 1
        result = {name: float(values[i]) for name, values in self.curve.val.items()}
        self.best = max(self.best, result["val_accuracy"])
        result.update(epoch=self.epoch, epoch_seconds=float(self.curve.epoch_seconds[i]),
                      best_val_accuracy=self.best, done=self.epoch >= self.epochs)
        return result


@dataclass
class ReplayRun:
    """What one (searcher, scheduler, seed) did on the simulated clock."""

    searcher: str
    scheduler: str
    seed: int
    trials: list[dict]  # one per trial in start order: trial_id, key, training seed, epochs, best
    events: pd.DataFrame  # one row per reported epoch: sim_time, compute, trial_id, epoch, val_accuracy, value
    selected: dict | None  # the trial select_trial's rule picks at the end
    sim_seconds: float
    compute: float


@functools.cache
def _trainable():
    """The trainable named in the replay's Experiment; replayed trials never run it."""
    from ray import tune

    class ReplayNeverRuns(tune.Trainable):
        def step(self):  # pragma: no cover - the replay loop never starts a trial
            raise RuntimeError("replayed trials are not run")

    return ReplayNeverRuns


def replay_method(table: Table, searcher: str, scheduler: str, seed: int, num_samples: int | None = None,
                  max_concurrent: int | None = None) -> ReplayRun:
    """Run one method on the table with the simulated clock; deterministic in its arguments."""
    from ray.tune.experiment import Experiment
    from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from searchers import SCHEDULERS, SEARCHERS, MethodArgs

    # Global generators some libraries draw from (ASHA picks brackets with np.random).
    random.seed(seed)
    np.random.seed(seed % 2**32)
    draw = np.random.default_rng([seed, 1])  # which training seed each trial follows
    task = table.task_spec()
    num_samples = num_samples or table.num_samples
    max_concurrent = max_concurrent or table.max_concurrent
    args = MethodArgs(task=task, seed=seed, num_samples=num_samples, max_concurrent=max_concurrent)
    plan = SEARCHERS[searcher](args)
    sched = SCHEDULERS[scheduler](args)
    # What tune.run does with them (ray/tune/tune.py): wrap, then set metric, mode and space.
    search_alg = plan.search_alg
    if search_alg is None:
        search_alg = BasicVariantGenerator(max_concurrent=max_concurrent)
    elif isinstance(search_alg, Searcher):
        search_alg = SearchGenerator(ConcurrencyLimiter(search_alg, max_concurrent=max_concurrent))
    param_space = {**plan.param_space, "seed": seed}
    with tempfile.TemporaryDirectory() as storage:
        experiment = Experiment(name="replay", run=_trainable(), config=param_space, num_samples=plan.num_samples,
                                storage_path=storage)
        search_alg.set_search_properties(task.metric, task.mode, param_space, **experiment.public_spec)
        sched.set_search_properties(task.metric, task.mode, **experiment.public_spec)
        search_alg.add_configurations([experiment])
        return _simulate(table, search_alg, sched, draw, max_concurrent,
                         searcher, scheduler, seed)


def _simulate(table, search_alg, sched, draw, max_concurrent, searcher, scheduler, seed) -> ReplayRun:
    from ray.tune.schedulers import TrialScheduler

    STOP = TrialScheduler.STOP  # noqa: N806 - Tune's constant
    clock = 0.0
    done_seconds = 0.0  # compute of finished epochs
    heap: list[tuple[float, int, str]] = []  # (simulated time the epoch ends, order, trial_id)
    order = itertools.count()
    live: dict[str, dict] = {}
    trials: list[dict] = []
    events: list[tuple] = []
    incumbent = None  # select_trial's key of the best trial so far: (best, epochs, -start)

    def start_trials():
        while len(live) < max_concurrent:
            trial = search_alg.next_trial()
            if trial is None:
                return
            sched.on_trial_add(None, trial)
            key = table.key(trial.config)
            curves = table.curves[key]
            curve = curves[int(draw.integers(len(curves)))] if len(curves) > 1 else curves[0]
            replayed = ReplayedTrial(curve, int(float(trial.config[table.epochs_param])))
            record = {"trial_id": trial.trial_id, "key": key, "training_seed": curve.seed, "epochs": 0,
                      "best_val_accuracy": None, "start": len(trials), "status": None}
            trials.append(record)
            live[trial.trial_id] = {"trial": trial, "replayed": replayed, "epoch_start": clock, "record": record,
                                    "time_total": 0.0}
            heapq.heappush(heap, (clock + replayed.next_seconds(), next(order), trial.trial_id))

    start_trials()
    while heap:
        clock, _, trial_id = heapq.heappop(heap)
        state = live[trial_id]
        trial, replayed, record = state["trial"], state["replayed"], state["record"]
        result = replayed.step()
        seconds = result["epoch_seconds"]
        done_seconds += seconds
        state["time_total"] += seconds
        result.update(trial_id=trial_id, training_iteration=result["epoch"], time_this_iter_s=seconds,
                      time_total_s=state["time_total"])
        record["epochs"] = result["epoch"]
        record["best_val_accuracy"] = result["best_val_accuracy"]
        # TuneController._process_trial_result: a done result stops the trial unseen by
        # on_trial_result; a STOP decision is not passed to the searcher's on_trial_result.
        if result["done"]:
            decision = STOP
        else:
            decision = sched.on_trial_result(None, trial, result)
            if decision != STOP:
                search_alg.on_trial_result(trial_id, result)
        candidate = (record["best_val_accuracy"], record["epochs"], -record["start"])
        if incumbent is None or candidate > incumbent[0]:
            incumbent = (candidate, record)
        best = incumbent[1]
        compute = done_seconds + sum(clock - s["epoch_start"] for t, s in live.items() if t != trial_id)
        events.append((clock, compute, trial_id, result["epoch"], result["val_accuracy"],
                       table.value(best["key"], best["epochs"])))
        if decision == STOP:
            result["done"] = True
            sched.on_trial_complete(None, trial, result)
            search_alg.on_trial_complete(trial_id, result=result)
            record["status"] = "completed" if replayed.epoch >= replayed.epochs else "stopped"
            del live[trial_id]
            start_trials()
        else:
            state["epoch_start"] = clock
            heapq.heappush(heap, (clock + replayed.next_seconds(), next(order), trial_id))
    frame = pd.DataFrame(events, columns=["sim_time", "compute", "trial_id", "epoch", "val_accuracy", "value"])
    return ReplayRun(searcher=searcher, scheduler=scheduler, seed=seed, trials=trials, events=frame,
                     selected=incumbent[1] if incumbent else None, sim_seconds=clock, compute=done_seconds)


# --- statistics ----------------------------------------------------------------------------
def regret_at(run: ReplayRun, table: Table, fractions) -> np.ndarray:
    """Regret (accuracy points) of the run's pick once it has used each fraction of the grid's
    compute; before its first result the regret is the whole optimum (nothing to pick)."""
    compute = run.events["compute"].to_numpy()
    values = run.events["value"].to_numpy()
    budget = np.asarray(fractions, dtype=float) * table.grid_compute
    idx = np.searchsorted(compute, budget, side="right") - 1  # compute is non-decreasing
    value = np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0)
    return 100.0 * (table.optimum - value)


def compute_to_reach(run: ReplayRun, table: Table, points: float = REACH_POINTS) -> float:
    """Share of the grid's compute the run used before its pick came within ``points``; inf if never."""
    regret = 100.0 * (table.optimum - run.events["value"].to_numpy())
    hit = np.flatnonzero(regret <= points + 1e-9)
    return float(run.events["compute"].iloc[hit[0]] / table.grid_compute) if len(hit) else math.inf


def selected_test_accuracy(run: ReplayRun, table: Table) -> float | None:
    """Test accuracy of the weights the run's pick keeps (its best-validation epoch)."""
    if run.selected is None or not table.has_test:
        return None
    curve = next(c for c in table.curves[run.selected["key"]] if c.seed == run.selected["training_seed"])
    return float(curve.test["test_accuracy"][curve.best_epoch[run.selected["epochs"] - 1] - 1])


def seed_row(run: ReplayRun, table: Table) -> dict:
    regrets = regret_at(run, table, REGRET_FRACTIONS)
    selected = run.selected
    return {
        "searcher": run.searcher, "scheduler": run.scheduler, "seed": run.seed,
        **{f"regret_pts_at_{round(f * 100)}pct": r for f, r in zip(REGRET_FRACTIONS, regrets)},
        "final_regret_pts": 100.0 * (table.optimum - run.events["value"].iloc[-1]) if len(run.events) else math.nan,
        "compute_to_reach": compute_to_reach(run, table),
        "compute_share": run.compute / table.grid_compute,
        "sim_seconds": run.sim_seconds,
        "n_trials": len(run.trials),
        "epochs_trained": sum(t["epochs"] for t in run.trials),
        "selected_config": json.dumps(table.config_of(selected["key"]), default=str) if selected else None,
        "selected_epochs": selected["epochs"] if selected else None,
        "selected_val_accuracy": selected["best_val_accuracy"] if selected else None,
        "test_accuracy": selected_test_accuracy(run, table),
    }


def wilcoxon(x, y) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank p-value of x - y (pairs), and the matched-pairs
    rank-biserial correlation (r in [-1, 1]; negative: x lower). Ties at zero are dropped
    (Wilcoxon's own treatment); all-zero differences give p = 1, r = 0."""
    from scipy.stats import rankdata
    from scipy.stats import wilcoxon as scipy_wilcoxon

    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0, 0.0
    ranks = rankdata(np.abs(d))
    r = float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    p = float(scipy_wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p, r


SUMMARY_COLUMNS = (
    ("searcher", "scheduler", "n_seeds")
    + tuple(f"regret_pts_at_{round(f * 100)}pct_{s}" for f in REGRET_FRACTIONS for s in ("median", "q25", "q75"))
    + ("compute_to_reach_median", "reach_share", "compute_share_median", "test_accuracy_median",
       "grid_test_accuracy", "test_accuracy_vs_grid_pts")
    + tuple(f"vs_random_at_{round(f * 100)}pct_{s}" for f in REGRET_FRACTIONS for s in ("diff_median", "p", "r"))
)


def summarize(seeds: pd.DataFrame, table: Table) -> pd.DataFrame:
    """One row per method from the per-seed rows (``seed_row``); see SUMMARY_COLUMNS."""
    grid_test = table.grid_selection_test_accuracy()
    reference = seeds[(seeds["searcher"] == REFERENCE[0]) & (seeds["scheduler"] == REFERENCE[1])].set_index("seed")
    rows = []
    for (searcher, scheduler), frame in seeds.groupby(["searcher", "scheduler"], sort=False):
        row = {"searcher": searcher, "scheduler": scheduler, "n_seeds": len(frame)}
        for f in REGRET_FRACTIONS:
            column = f"regret_pts_at_{round(f * 100)}pct"
            q25, median, q75 = np.percentile(frame[column], [25, 50, 75])
            row.update({f"{column}_median": median, f"{column}_q25": q25, f"{column}_q75": q75})
            if len(reference) and (searcher, scheduler) != REFERENCE:
                paired = frame.set_index("seed")[column].align(reference[column], join="inner")
                p, r = wilcoxon(*paired)
                row.update({f"vs_random_at_{round(f * 100)}pct_diff_median": float(np.median(paired[0] - paired[1])),
                            f"vs_random_at_{round(f * 100)}pct_p": p, f"vs_random_at_{round(f * 100)}pct_r": r})
        reach = frame["compute_to_reach"].to_numpy()
        row["compute_to_reach_median"] = float(np.median(reach))  # inf where most seeds never get there
        row["reach_share"] = float(np.isfinite(reach).mean())
        row["compute_share_median"] = float(frame["compute_share"].median())
        if frame["test_accuracy"].notna().any():
            row["test_accuracy_median"] = float(frame["test_accuracy"].median())
            row["grid_test_accuracy"] = grid_test
            row["test_accuracy_vs_grid_pts"] = 100.0 * (row["test_accuracy_median"] - grid_test)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def anytime_curves(runs: list[ReplayRun], table: Table) -> pd.DataFrame:
    """Regret (points) at ANYTIME_POINTS compute fractions, one row per run and point."""
    rows = []
    for run in runs:
        for f, r in zip(ANYTIME_POINTS, regret_at(run, table, ANYTIME_POINTS)):
            rows.append({"searcher": run.searcher, "scheduler": run.scheduler, "seed": run.seed,
                         "compute_fraction": f, "regret_pts": r})
    return pd.DataFrame(rows)


# --- running many, writing the results -----------------------------------------------------
def _job(job):
    table, searcher, scheduler, seed, num_samples, max_concurrent = job
    run = replay_method(table, searcher, scheduler, seed, num_samples, max_concurrent)
    return run, seed_row(run, table)


def replay_all(table: Table, methods, seeds, num_samples=None, max_concurrent=None, workers: int = 1):
    """Every (method, seed): the ReplayRuns and the per-seed rows, in (method, seed) order.
    ``workers`` processes share the jobs; the results do not depend on how many."""
    jobs = [(table, s, c, seed, num_samples, max_concurrent) for s, c in methods for seed in seeds]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(workers) as pool:
            out = pool.map(_job, jobs, chunksize=1)
    else:
        out = [_job(job) for job in jobs]
    return [o[0] for o in out], pd.DataFrame([o[1] for o in out])


def _plot_anytime(anytime: pd.DataFrame, path: Path) -> None:
    """One panel per scheduler: each searcher's median regret with its interquartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedulers = list(dict.fromkeys(anytime["scheduler"]))
    fig, axes = plt.subplots(1, len(schedulers), figsize=(6 * len(schedulers), 4.5), sharey=True, squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(anytime["searcher"]))}
    for ax, scheduler in zip(axes[0], schedulers):
        for searcher, frame in anytime[anytime["scheduler"] == scheduler].groupby("searcher", sort=False):
            stats = frame.groupby("compute_fraction")["regret_pts"].quantile([0.25, 0.5, 0.75]).unstack()
            ax.step(stats.index * 100, stats[0.5], where="post", color=colors[searcher], label=searcher)
            ax.fill_between(stats.index * 100, stats[0.25], stats[0.75], step="post", color=colors[searcher],
                            alpha=0.12)
        ax.axhline(REACH_POINTS, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("compute used, % of the grid's")
        ax.set_title(f"scheduler: {scheduler}")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("regret to the grid's best val accuracy (points)")
    fig.suptitle("Anytime regret: median and interquartile band over replay seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def summary_markdown(summary: pd.DataFrame, table: Table, settings: dict) -> str:
    lines = [f"# Replay of {table.task}: {settings['n_seeds']} seeds per method", "",
             (f"Table: {table.source} ({len(table.curves)} configurations, "
             f"{len(next(iter(table.curves.values())))} training seed(s)); grid optimum val accuracy "
             f"{table.optimum:.4f}; grid compute {table.grid_compute:.1f} s; concurrency {settings['max_concurrent']}; "
             f"{settings['num_samples']} trials per sampling searcher; ASHA grace period {table.grace_period} epochs, "
              f"reduction factor {table.reduction_factor}. Regret in accuracy points; compute as a share "
             "of the grid's."), "",
             ("| method | regret @5% | @10% | @25% | @50% | compute to within 0.5 (median) | seeds reaching | "
             "compute used | test acc (median) | vs grid test (pts) | @10% vs random: diff, p, r |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary.to_dict("records"):
        regrets = [f"{_fmt(row[f'regret_pts_at_{round(f * 100)}pct_median'])} "
                   f"[{_fmt(row[f'regret_pts_at_{round(f * 100)}pct_q25'])}, "
                   f"{_fmt(row[f'regret_pts_at_{round(f * 100)}pct_q75'])}]" for f in REGRET_FRACTIONS]
        reach = row["compute_to_reach_median"]
        test = (f"{_fmt(row['vs_random_at_10pct_diff_median'])}, p={_fmt(row['vs_random_at_10pct_p'], 3)}, "
                f"r={_fmt(row['vs_random_at_10pct_r'])}" if not pd.isna(row["vs_random_at_10pct_p"]) else "-")
        lines.append(f"| {row['searcher']}+{row['scheduler']} | " + " | ".join(regrets)
                     + f" | {_fmt(100 * reach, 1) + '%' if math.isfinite(reach) else 'never'}"
                     + f" | {_fmt(100 * row['reach_share'], 0)}% | {_fmt(100 * row['compute_share_median'], 1)}%"
                     + f" | {_fmt(row['test_accuracy_median'], 4)} | {_fmt(row['test_accuracy_vs_grid_pts'])} | {test} |")
    grid_test = table.grid_selection_test_accuracy()
    lines += ["", ("Regret cells: median [25th, 75th percentile] over seeds. The paired test is Wilcoxon's signed-rank "
              f"test against {REFERENCE[0]}+{REFERENCE[1]} over the same seeds (two-sided); r is the matched-pairs "
              "rank-biserial correlation (negative: lower regret than random)."),
              f"Grid's own selection test accuracy: {_fmt(grid_test, 4)}." if grid_test is not None else
              "The table has no test curves (record the grid with run_all.py --record-test-curves): test columns "
              "are empty.",
              "", "![anytime regret](plots/anytime_regret.png)", ""]
    return "\n".join(lines)


def write_results(out: Path, table: Table, runs: list[ReplayRun], seeds: pd.DataFrame, settings: dict) -> pd.DataFrame:
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    summary = summarize(seeds, table)
    anytime = anytime_curves(runs, table)
    records.write_csv(out / "seeds.csv", list(seeds.columns), seeds.to_dict("records"))
    records.write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary.to_dict("records"))
    records.write_csv(out / "anytime.csv", list(anytime.columns), anytime.to_dict("records"))
    _plot_anytime(anytime, out / "plots" / "anytime_regret.png")
    records.write_text(out / "summary.md", summary_markdown(summary, table, settings))
    records.write_json(out / "replay.json", {**settings, "grid_optimum": table.optimum,
                                             "grid_compute_seconds": table.grid_compute})
    return summary


# --- command line --------------------------------------------------------------------------
def builtin_tables() -> list[str]:
    return sorted(p.name for p in BUILTIN.iterdir() if (p / "run.json").is_file()) if BUILTIN.is_dir() else []


def parse_args(argv):
    from run_all import _OneLineErrorParser
    from searchers import SCHEDULERS, SEARCHERS

    parser = _OneLineErrorParser(prog="python -m experiments.replay",
                                 description="Replay searchers and schedulers on a recorded grid run's learning curves, "
                                             "over many seeds, on a simulated clock.")
    parser.add_argument("run_dir", nargs="?", help="a run folder holding a grid:fifo run (its curves.csv is the table)")
    parser.add_argument("--builtin", default=None, help=f"replay a table shipped with the package: "
                                                        f"{', '.join(builtin_tables()) or 'none'}")
    parser.add_argument("--seeds", type=int, default=20, help="replay seeds per method (0..N-1; default 20)")
    parser.add_argument("--methods", default=",".join(SEARCHERS),
                        help=f"comma-separated searcher[:scheduler]; a searcher alone runs with every scheduler "
                             f"({', '.join(SCHEDULERS)}); default: every searcher with every scheduler")
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
    args = parser.parse_args(argv)
    if args.reduction_factor is not None and args.reduction_factor < 2:
        parser.error(f"--reduction-factor must be at least 2, got {args.reduction_factor}")
    if (args.run_dir is None) == (args.builtin is None):
        parser.error("give a grid run folder or --builtin <task>, one of the two")
    if args.builtin is not None and args.builtin not in builtin_tables():
        parser.error(f"no built-in table {args.builtin!r}; built-in: {', '.join(builtin_tables()) or 'none'}")
    if args.builtin is not None and args.out is None:
        parser.error("--builtin needs --out <folder> (the shipped table is not written into)")
    for name in ("seeds", "num_samples", "max_concurrent", "workers", "grace_period"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    try:
        args.methods = parse_replay_methods(args.methods)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def parse_replay_methods(text: str) -> list[tuple[str, str]]:
    """``"bayesopt,random:fifo"`` -> pairs; a searcher alone means every scheduler."""
    from experiments.spec import parse_methods
    from searchers import SCHEDULERS

    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"--methods {text!r} is malformed; expected e.g. 'random,hyperopt:asha,bayesopt'")
    methods = []
    for item in items:
        if ":" in item:
            methods += parse_methods(item)
        else:
            parse_methods(item)  # checks the searcher's name
            methods += [(item, scheduler) for scheduler in SCHEDULERS]
    if len(set(methods)) != len(methods):
        raise ValueError(f"--methods {text!r} names a method twice")
    return methods


def with_asha_settings(table: Table, grace_period: int | None, reduction_factor: int | None) -> Table:
    """The table with ASHA's settings as given, else the task's current ones (the grid's
    recording does not depend on them; the replay should use what a run would use now), else
    the recorded run's."""
    import dataclasses

    from trainables import TASK_MODULES, get_task

    if table.task in TASK_MODULES:
        current = get_task(table.task).for_budget(table.budget)
        grace_period = grace_period or current.grace_period
        reduction_factor = reduction_factor or current.reduction_factor
    return dataclasses.replace(table, grace_period=grace_period or table.grace_period,
                               reduction_factor=reduction_factor or table.reduction_factor, _value={})


def main(argv=None) -> int:
    args = parse_args(argv)
    source = BUILTIN / args.builtin if args.builtin else Path(args.run_dir)
    out = Path(args.out) if args.out else source / "replay"
    try:
        table = load_table(source)
        out.mkdir(parents=True, exist_ok=True)
    except (ReplayError, OSError) as exc:
        print(f"python -m experiments.replay: error: {exc}", file=sys.stderr)
        return 2
    table = with_asha_settings(table, args.grace_period, args.reduction_factor)
    settings = {"source": str(source), "task": table.task, "n_seeds": args.seeds,
                "grace_period": table.grace_period, "reduction_factor": table.reduction_factor,
                "methods": [f"{s}:{c}" for s, c in args.methods],
                "num_samples": args.num_samples or table.num_samples,
                "max_concurrent": args.max_concurrent or table.max_concurrent, "workers": args.workers}
    print(f"replaying {len(args.methods)} methods x {args.seeds} seeds on {table.task} ({len(table.curves)} "
          f"configurations, concurrency {settings['max_concurrent']}) ...")
    started = time.perf_counter()
    runs, seeds = replay_all(table, args.methods, range(args.seeds), args.num_samples, args.max_concurrent,
                             workers=args.workers)
    settings["replay_seconds"] = time.perf_counter() - started
    summary = write_results(out, table, runs, seeds, settings)
    print(summary_markdown(summary, table, settings))
    print(f"replayed in {settings['replay_seconds']:.1f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
