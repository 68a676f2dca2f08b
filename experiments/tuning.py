"""One method through a Ray Tune ``Tuner``: the wiring of searcher, scheduler, resources,
checkpoints and failures, or ``Tuner.restore`` of an interrupted method."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from experiments.callbacks import OutOfMemoryRetry, SchedulerState
from experiments.checkpoints import KeepSelectable
from experiments.plan import Method, RunPlan
from experiments.spec import is_uri
from searchers import SCHEDULERS, SEARCHERS, MethodArgs


@dataclass(frozen=True)
class Tuned:
    """What one ``Tuner.fit`` gave: Tune's ResultGrid, and when it started and how long it ran."""

    results: Any  # ray.tune.ResultGrid
    started: float  # time.time() at the start of fit
    wall_seconds: float


def expected_trials(plan: RunPlan, method: Method) -> int:
    """How many trials the method will run: the grid's size, or the sampling budget (BayesOpt
    never repeats a configuration, so at most the grid's size)."""
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
    return Tuned(results, started, time.time() - started)


def _new_tuner(plan: RunPlan, method: Method, trainable, storage: str, callbacks) -> tune.Tuner:
    task = plan.task
    args = MethodArgs(task=task, seed=method.seed, num_samples=plan.num_samples, max_concurrent=plan.max_concurrent)
    search = SEARCHERS[method.searcher](args)
    scheduler = SCHEDULERS[method.scheduler](args)
    return tune.Tuner(
        trainable,
        # The seed travels in the config: trainables read nothing else.
        param_space={**search.param_space, **plan.fixed_config, "seed": method.seed},
        tune_config=tune.TuneConfig(
            metric=task.metric,
            mode=task.mode,
            search_alg=search.search_alg,
            scheduler=scheduler,
            num_samples=search.num_samples,
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=True,  # one worker process (and its loaded data) serves many trials
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=method.name,
            storage_path=storage,
            verbose=0,
            callbacks=[*(callbacks or []), SchedulerState(scheduler), OutOfMemoryRetry(),
                       *([KeepSelectable(task.objective)] if plan.keep_checkpoints != "all" else [])],
            # The checkpoint holds the best-validation weights that the test split scores.
            # num_to_keep makes Tune snapshot the experiment state after every checkpoint, that
            # is as each trial ends: a run killed at any moment resumes without rerunning a
            # finished trial (one snapshot per trial; trials checkpoint only at their end).
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        ),
    )
