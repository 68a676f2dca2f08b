"""One method through a Ray Tune ``Tuner``: the wiring of searcher, scheduler, resources,
checkpoints and failures, or ``Tuner.restore`` of an interrupted method."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from core.records import RESUMABLE
from experiments.budget import budget_hooks
from experiments.callbacks import KeepPausedTrialLogs, OutOfMemoryRetry, SchedulerState
from experiments.checkpoints import DropTrainingState, KeepSelectable
from experiments.plan import Method, RunPlan
from experiments.spec import is_uri
from experiments.tune_adapter import tuner_scheduler
from searchers import PAUSING, MethodArgs, build_method, method_concurrency


@dataclass(frozen=True)
class Tuned:
    """What one ``Tuner.fit`` gave: Tune's ResultGrid, and when it started and how long it ran."""

    results: Any  # ray.tune.ResultGrid
    started: float  # time.time() at the start of fit
    wall_seconds: float
    evicted: frozenset = frozenset()  # trials a pausing scheduler stopped for good for its disk budget


def expected_trials(plan: RunPlan, method: Method) -> int:
    """How many trials the method will run: the grid's size, or the sampling budget (BayesOpt
    never repeats a configuration, so at most the grid's size)."""
    if plan.time_budget_s:
        return 0  # as many as the budget allows: not known in advance (the progress line shows no total)
    if method.searcher == "grid":
        return plan.task.grid_size
    if method.searcher == "bayesopt":
        return min(plan.num_samples, plan.task.grid_size)
    return plan.num_samples


def trial_dirname(trial) -> str:
    # Short names: Ray's default packs the whole config into the folder name.
    return f"trial_{trial.trial_id}"


def tune_method(plan: RunPlan, method: Method, storage_path: Path | str, callbacks: list | None = None,
                resume: bool = False) -> Tuned:
    """Run ``method`` through a Ray Tune ``Tuner`` into ``storage_path/<method name>``.

    ``plan.max_failures``: Ray's FailureConfig, how often a failed trial is retried (an
    out-of-memory error is often transient on a shared GPU). ``resume``: continue the
    method's Tune folder with ``Tuner.restore`` (trials that finished are kept, the searcher's
    state is restored, unfinished trials start again).
    """
    task = plan.task
    # The snapshot after every trial's checkpoint (num_to_keep=1, below) is deliberate: Tune's
    # warning that snapshots come often would print on every fast task.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(task.load_trainable(), plan.resource_request())
    storage = str(storage_path) if is_uri(storage_path) else str(Path(storage_path).absolute())
    if resume:
        tuner = tune.Tuner.restore(f"{storage}/{method.name}", trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        tuner = _new_tuner(plan, method, trainable, storage, callbacks)
    started = time.time()
    results = tuner.fit()
    scheduler = tuner_scheduler(tuner)
    return Tuned(results, started, time.time() - started, frozenset(getattr(scheduler, "evicted", ())))


def _new_tuner(plan: RunPlan, method: Method, trainable, storage: str, callbacks) -> tune.Tuner:
    task = plan.task
    concurrency = method_concurrency(method.searcher, plan.max_concurrent, plan.num_samples, task.grid_size)
    args = MethodArgs(task=task, seed=method.seed, num_samples=plan.num_samples, max_concurrent=concurrency,
                      pause_disk_gb=plan.pause_disk_gb)
    search, scheduler = build_method(method.searcher, method.scheduler, args)
    pausing = method.scheduler in PAUSING
    stopper, budget = (budget_hooks(plan.time_budget_s, bool(plan.gpus_per_trial), plan.gpus_per_trial)
                       if plan.time_budget_s else (None, None))
    return tune.Tuner(
        trainable,
        # The seed travels in the config: trainables read nothing else. Under a pausing scheduler a
        # checkpoint before a trial's end holds its training state (trainables.state), to resume from.
        param_space={**search.param_space, **plan.fixed_config, "seed": method.seed,
                     **({RESUMABLE: True} if pausing else {})},
        tune_config=tune.TuneConfig(
            metric=task.metric,
            mode=task.mode,
            search_alg=search.search_alg,
            scheduler=scheduler,
            num_samples=search.num_samples,
            # a pausing scheduler's searcher has its own limit, which leaves the paused trials out (searchers.pausing)
            max_concurrent_trials=None if pausing else concurrency,
            reuse_actors=True,  # one worker process (and its loaded data) serves many trials
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=method.name,
            storage_path=storage,
            verbose=0,
            stop=stopper,
            callbacks=[*(callbacks or []), SchedulerState(scheduler), OutOfMemoryRetry(), *([budget] if budget else []),
                       *([DropTrainingState(), KeepPausedTrialLogs()] if pausing else []),
                       *([KeepSelectable(task.objective)] if plan.keep_checkpoints != "all" else [])],
            # The checkpoint holds the best-validation weights that the test split scores.
            # num_to_keep makes Tune snapshot the experiment state after every checkpoint, that
            # is as each trial ends (or pauses): a run killed at any moment resumes without rerunning
            # a finished trial; and a paused trial's newer state replaces its older one.
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        ),
    )
