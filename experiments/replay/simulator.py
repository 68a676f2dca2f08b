"""One method replayed on a table, on a simulated clock (Ray's TuneController replaced by a
discrete-event loop), and many (method, seed) replays spread over processes."""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from unittest import mock

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.experiment import Experiment, Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.basic_variant import BasicVariantGenerator

from core.rules import selection_key
from experiments.replay import variants
from experiments.replay.stats import seed_row
from experiments.replay.table import Curve, Table
from searchers import MethodArgs, build_method, method_concurrency


class ReplayedTrial:
    """Stands in for a trainable: each ``step()`` reports the next recorded epoch, exactly as
    recorded (validation numbers only), and ``done`` at the configuration's own epoch count."""

    def __init__(self, curve: Curve, epochs: int):
        self.curve = curve
        self.epochs = epochs
        self.epoch = 0

    def next_seconds(self) -> float:
        return float(self.curve.epoch_seconds[self.epoch])

    def step(self) -> dict:
        i = self.epoch
        self.epoch += 1
        result = {name: float(values[i]) for name, values in self.curve.val.items()}
        result.update({"epoch": self.epoch, "epoch_seconds": float(self.curve.epoch_seconds[i]),
                       self.curve.objective.best_column: float(self.curve.running_best[i]),
                       "done": self.epoch >= self.epochs})
        return result


@dataclass
class ReplayRun:
    """What one (searcher, scheduler, seed) did on the simulated clock."""

    searcher: str
    scheduler: str
    seed: int
    trials: list[dict]  # one per trial in start order: trial_id, key, training seed, epochs, best
    events: pd.DataFrame  # one row per reported epoch: sim_time, compute, trial_id, epoch, the metric, value
    selected: dict | None  # the trial select_trial's rule picks at the end
    sim_seconds: float
    compute: float
    peak_paused: int = 0  # the most trials paused at once (a pausing scheduler's)
    n_evicted: int = 0  # paused trials stopped for good for the disk budget


@functools.cache
def _trainable():
    """The trainable named in the replay's Experiment; replayed trials never run it."""
    class ReplayNeverRuns(tune.Trainable):
        def step(self):  # pragma: no cover - the replay loop never starts a trial
            raise RuntimeError("replayed trials are not run")

    return ReplayNeverRuns


def replay_method(table: Table, searcher: str, scheduler: str, seed: int, num_samples: int | None = None,
                  max_concurrent: int | None = None, budget: float | None = None,
                  pause_disk_gb: float | None = None, state_mb: float | None = None) -> ReplayRun:
    """Run one method on the table with the simulated clock; deterministic in its arguments.
    ``budget``: stop once the method has spent this share of the grid's compute (None: when
    its searcher is done). ``pause_disk_gb``, ``state_mb``: a pausing scheduler's disk budget for
    paused states and the size of one (a real run measures each checkpoint; the replay states it)."""
    # Global generators some libraries draw from (ASHA picks brackets with np.random).
    random.seed(seed)
    np.random.seed(seed % 2**32)
    draw = np.random.default_rng([seed, 1])  # which training seed each trial follows
    task = table.task_spec()
    num_samples = num_samples or table.num_samples
    # the real run's rule (searchers.method_concurrency), so a replay starts what a run starts
    max_concurrent = method_concurrency(searcher, max_concurrent or table.max_concurrent, num_samples, task.grid_size)
    state_bytes = None if state_mb is None else (lambda trial: state_mb * 2**20)
    args = MethodArgs(task=task, seed=seed, num_samples=num_samples, max_concurrent=max_concurrent,
                      pause_disk_gb=pause_disk_gb, state_bytes=state_bytes)
    plan, sched = build_method(searcher, scheduler, args)  # as experiments.tuning builds it
    # What tune.run does with them (ray/tune/tune.py): wrap, then set metric, mode and space.
    search_alg = plan.search_alg
    if search_alg is None:
        search_alg = BasicVariantGenerator(max_concurrent=max_concurrent)
    elif isinstance(search_alg, Searcher):
        if not isinstance(search_alg, ConcurrencyLimiter):
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=max_concurrent)
        search_alg = SearchGenerator(search_alg)
    param_space = {**plan.param_space, "seed": seed}
    with tempfile.TemporaryDirectory() as storage:
        experiment = Experiment(name="replay", run=_trainable(), config=param_space, num_samples=plan.num_samples,
                                storage_path=storage)
        sched.set_search_properties(task.metric, task.mode, **experiment.public_spec)
        if variants.FAST_VARIANTS and isinstance(search_alg, BasicVariantGenerator):
            # grid and random search: the configurations Ray's generator draws, drawn once per process
            search_alg = variants.replayed(searcher, args, param_space, _trainable())
        else:
            search_alg.set_search_properties(task.metric, task.mode, param_space, **experiment.public_spec)
            search_alg.add_configurations([experiment])
        with _numbered_trial_ids():
            return _simulate(table, search_alg, sched, draw, max_concurrent,
                             searcher, scheduler, seed, budget)


@contextlib.contextmanager
def _numbered_trial_ids():
    """Trial ids 00000001, 00000002, ... while one replay runs. Ray draws 8 random hex digits per
    trial, and its ConcurrencyLimiter asserts a new id is not among the live ones: under promotion,
    where ~1,900 paused trials stay live on an LCBench grid, about one replay in 2,000 drew a live
    id (1,944 draws x ~950 live on average / 16**8; one suite crashed on it after 73 replays)."""
    counter = itertools.count(1)
    with mock.patch.object(Trial, "generate_id", lambda *_: f"{next(counter):08d}"):
        yield


class _Controller:
    """What a scheduler sees of Tune's controller in the replay: the trials with their statuses,
    ``stop_trial`` (for a paused trial, as TuneController.stop_trial does: the scheduler's
    on_trial_remove and the searcher's on_trial_complete without a result), and ``search_alg``."""

    def __init__(self, trials, stop, search_alg):
        self._trials, self.stop_trial, self.search_alg = trials, stop, search_alg

    def get_trials(self):
        return self._trials()


def _simulate(table, search_alg, sched, draw, max_concurrent, searcher, scheduler, seed, budget=None) -> ReplayRun:
    STOP, PAUSE = TrialScheduler.STOP, TrialScheduler.PAUSE  # noqa: N806 - Tune's constants
    objective = table.objective
    clock = 0.0
    done_seconds = 0.0  # compute of finished epochs
    heap: list[tuple[float, int, str]] = []  # (simulated time the epoch ends, order, trial_id)
    order = itertools.count()
    live: dict[str, dict] = {}
    paused: dict[str, dict] = {}  # trial id -> its state, holding no worker (a pausing scheduler's)
    pending: list = []  # suggested, not started (a pausing scheduler chooses between it and the paused)
    trials: list[dict] = []
    events: list[tuple] = []
    incumbent = None  # (selection_key, record) of the trial core.rules.select_trial would pick now
    peak_paused = 0

    def stop_paused(trial):
        state = paused.pop(trial.trial_id)
        trial.set_status(Trial.TERMINATED)
        sched.on_trial_remove(None, trial)
        search_alg.on_trial_complete(trial.trial_id)  # no result, as TuneController.stop_trial gives none
        state["record"]["status"] = "evicted" if trial.trial_id in getattr(sched, "evicted", ()) else "stopped"

    # pending first, then running: what the scheduler looks for stops early (the paused are last)
    controller = _Controller(lambda: itertools.chain(pending, (s["trial"] for s in live.values()),
                                                     (s["trial"] for s in paused.values())), stop_paused,
                             search_alg)

    def start_trials():
        while len(live) < max_concurrent:
            if not pending:
                trial = search_alg.next_trial()
                if trial is not None:
                    sched.on_trial_add(None, trial)
                    pending.append(trial)
            if paused:  # Tune asks the scheduler first: a paused trial it promotes, or a pending one
                trial = sched.choose_trial_to_run(controller)
            else:
                trial = pending[0] if pending else None
            if trial is None:
                return
            if trial.trial_id in paused:  # resumed from its checkpoint: its recorded curve goes on
                state = live[trial.trial_id] = paused.pop(trial.trial_id)
                trial.set_status(Trial.RUNNING)
                state["epoch_start"] = clock
                heapq.heappush(heap, (clock + state["replayed"].next_seconds(), next(order), trial.trial_id))
                continue
            pending.remove(trial)
            trial.set_status(Trial.RUNNING)
            key = table.key(trial.config)
            curves = table.curves[key]
            curve = curves[int(draw.integers(len(curves)))] if len(curves) > 1 else curves[0]
            replayed = ReplayedTrial(curve, int(float(trial.config[table.epochs_param])))
            record = {"trial_id": trial.trial_id, "key": key, "training_seed": curve.seed, "epochs": 0,
                      objective.best_column: None, "start": len(trials), "status": None}
            trials.append(record)
            live[trial.trial_id] = {"trial": trial, "replayed": replayed, "epoch_start": clock, "record": record,
                                    "time_total": 0.0}
            heapq.heappush(heap, (clock + replayed.next_seconds(), next(order), trial.trial_id))

    start_trials()
    limit = math.inf if budget is None else budget * table.grid_compute  # seconds of compute allowed
    while heap and done_seconds < limit:
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
        record[objective.best_column] = result[objective.best_column]
        # TuneController._process_trial_result: a done result stops the trial unseen by
        # on_trial_result; a STOP decision is not passed to the searcher's on_trial_result.
        if result["done"]:
            decision = STOP
        else:
            decision = sched.on_trial_result(None, trial, result)
            if decision != STOP:
                search_alg.on_trial_result(trial_id, result)
        candidate = selection_key(record[objective.best_column], record["epochs"], record["start"], objective)
        if incumbent is None or candidate > incumbent[0]:
            incumbent = (candidate, record)
        best = incumbent[1]
        compute = done_seconds + sum(clock - s["epoch_start"] for t, s in live.items() if t != trial_id)
        events.append((clock, compute, trial_id, result["epoch"], result[objective.metric],
                       table.value(best["key"], best["epochs"])))
        if decision == STOP:
            result["done"] = True
            trial.set_status(Trial.TERMINATED)
            sched.on_trial_complete(None, trial, result)
            search_alg.on_trial_complete(trial_id, result=result)
            record["status"] = "completed" if replayed.epoch >= replayed.epochs else "stopped"
            del live[trial_id]
            start_trials()
        elif decision == PAUSE:  # its worker is free; the scheduler may resume it later
            trial.set_status(Trial.PAUSED)
            paused[trial_id] = live.pop(trial_id)
            start_trials()  # a pausing scheduler with a disk budget evicts here, as it does in a run
            peak_paused = max(peak_paused, len(paused))
        else:
            state["epoch_start"] = clock
            heapq.heappush(heap, (clock + replayed.next_seconds(), next(order), trial_id))
    for state in paused.values():  # the budget ran out while they waited
        state["record"]["status"] = "paused"
    frame = pd.DataFrame(events, columns=["sim_time", "compute", "trial_id", "epoch", objective.metric, "value"])
    return ReplayRun(searcher=searcher, scheduler=scheduler, seed=seed, trials=trials, events=frame,
                     selected=incumbent[1] if incumbent else None, sim_seconds=clock, compute=done_seconds,
                     peak_paused=peak_paused, n_evicted=len(getattr(sched, "evicted", ())))


def _blas_libraries_loaded() -> None:
    """Loads the BLAS and OpenMP libraries a replay computes with (scipy ships its own OpenBLAS
    next to numpy's, loaded on first use): threadpoolctl limits only what is loaded already."""
    import scipy.linalg  # noqa: F401
    import sklearn.gaussian_process  # noqa: F401


def _one_blas_thread() -> None:
    """A worker process computes with one BLAS and OpenMP thread. The GP's matrices are small: with
    OpenBLAS's default (a thread per core) two worker processes on two cores ran a BayesOpt
    replay 9x slower than with one thread each (82 s against 9.4 s, LCBench 126025), and even
    one process alone 1.8x slower."""
    from threadpoolctl import threadpool_limits

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # this process only: any library loaded later reads it
    _blas_libraries_loaded()
    threadpool_limits(limits=1)


def map_jobs(fn, jobs: list, workers: int = 1, ordered: bool = True):
    """``fn(job)`` for every job, yielded as each finishes (in ``jobs``' order when ``ordered``),
    over ``workers`` processes; results never depend on the number of workers."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
        with context.Pool(workers, initializer=_one_blas_thread) as pool:
            yield from (pool.imap if ordered else pool.imap_unordered)(fn, jobs, chunksize=1)
        return
    from threadpoolctl import threadpool_limits

    _blas_libraries_loaded()
    with threadpool_limits(limits=1):  # as in the workers (see _one_blas_thread); restored after
        for job in jobs:
            yield fn(job)


def _job(job):
    table, searcher, scheduler, seed, num_samples, max_concurrent = job
    run = replay_method(table, searcher, scheduler, seed, num_samples, max_concurrent)
    return run, seed_row(run, table)


def replay_all(table: Table, methods, seeds, num_samples=None, max_concurrent=None, workers: int = 1):
    """Every (method, seed): the ReplayRuns and the per-seed rows, in (method, seed) order.
    ``workers`` processes share the jobs; the results do not depend on how many."""
    jobs = [(table, s, c, seed, num_samples, max_concurrent) for s, c in methods for seed in seeds]
    out = list(map_jobs(_job, jobs, workers))
    return [o[0] for o in out], pd.DataFrame([o[1] for o in out])
