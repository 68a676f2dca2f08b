"""A method's pick scored on the test split, and the method's summary row."""

from __future__ import annotations

import json

from core import records
from core.records import EVICTED, FAILED, OUT_OF_MEMORY
from core.task import TaskSpec
from experiments.budget import compute_spent
from experiments.plan import Method, RunPlan


def evaluate_selected(plan: RunPlan, result) -> dict[str, float]:
    """Score a trial's best-validation weights on the test split.

    With a GPU, in a Ray task holding the trial's resources (placed and accounted like a
    trial); on the CPU, in this process, which has the task's modules loaded already (a fresh
    Ray worker would spend seconds importing torch for a millisecond evaluation)."""
    from trainables.base import EpochTrainable, evaluate_checkpoint

    trainable = plan.task.load_trainable()
    if result.checkpoint is None or not issubclass(trainable, EpochTrainable):
        return {}  # nothing kept, or a plain Tune Trainable: no TrainingRun to score on a test split
    # the Checkpoint itself: evaluate_checkpoint reads it where it runs (a copy from a URI storage)
    args = (trainable, result.config, result.checkpoint, "test")
    if not plan.gpus_per_trial:
        return evaluate_checkpoint(*args)
    import ray

    return ray.get(ray.remote(**scoring_options(plan))(evaluate_checkpoint).remote(*args))


def scoring_options(plan: RunPlan) -> dict:
    """The Ray task that scores a pick on the GPU: the trial's resources (placed and counted
    like a trial), and a worker that exits after it (``max_calls=1``), so its CUDA context and
    the test split leave the card. Set in ``ray.remote``: ``.options()`` would drop max_calls. A worker
    that dies (killed, out of memory) is retried once (``max_retries``), then the run goes on
    without the pick's test scores (runner.score_pick)."""
    return {"num_cpus": plan.resources["cpu"], "num_gpus": plan.gpus_per_trial, "max_calls": 1, "max_retries": 1}


def gpu_seconds(trials, gpus_per_trial: float) -> float | None:
    shares = [t.get("gpu_share") if t.get("gpu_share") is not None else gpus_per_trial for t in trials]
    if not any(shares):
        return None
    return sum(t["train_seconds"] * share for t, share in zip(trials, shares))


def summarize_method(task: TaskSpec, method: Method, trials, wall_seconds: float, test_metrics: dict,
                     selected: dict | None, gpus_per_trial: float, samples: list[dict] | None = None,
                     curves=(), time_budget: float | None = None) -> dict:
    """The summary row of one method. ``samples``: the resource monitor's rows of this method;
    peak host memory is theirs (driver plus Ray workers) where there are any, else the largest
    that a trial reported of its own process. GPU memory: see core.records."""
    samples = samples or []
    trial_seconds = sum(t["train_seconds"] for t in trials)
    # on a cluster a sample has a row per node (and per GPU): the peak is the largest node's
    rss = ([s["rss_mb"] for s in samples if s.get("rss_mb") is not None]
           or [t["peak_rss_mb"] for t in trials if t["peak_rss_mb"] is not None])
    gpu_util = [s["gpu_util"] for s in samples if s["gpu_util"] is not None]
    card_mem = [s["gpu_mem_mb"] for s in samples if s["gpu_mem_mb"] is not None]
    trial_mem = [t["peak_trial_gpu_mem_mb"] for t in trials if t["peak_trial_gpu_mem_mb"] is not None]
    return {
        **method.identity(task.name),
        "n_trials": len(trials),
        "n_failed": sum(t["status"] == FAILED for t in trials),
        "n_oom": sum(t["status"] == OUT_OF_MEMORY for t in trials),  # out of GPU memory for good (core.rules)
        "n_evicted": sum(t["status"] == EVICTED for t in trials),  # paused, then stopped for the disk budget
        # trials whose configuration an earlier trial of the method had: random search and TPE draw
        # with replacement from the grid's values (more trials than configurations makes many)
        "n_repeats": len(trials) - len({tuple(str(t.get(f"config/{k}")) for k in task.space) for t in trials}),
        "epochs_trained": sum(t["epochs"] for t in trials),
        task.objective.best_column: selected[task.objective.best_column] if selected else None,
        **{f"test_{name}": test_metrics.get(name) for name in records.test_metrics(task.metrics)},
        "wall_seconds": wall_seconds,
        "trial_seconds": trial_seconds,
        # GPU-seconds are trial time x the trial's GPU share (its own where it has one: packed by
        # measured memory, or re-queued alone after running out of memory); absent (not zero)
        # where no GPU was used.
        "gpu_seconds": gpu_seconds(trials, gpus_per_trial),
        "compute_spent": compute_spent(trials, curves, bool(gpus_per_trial), gpus_per_trial),
        "compute_budget": time_budget,
        "mean_gpu_util": sum(gpu_util) / len(gpu_util) if gpu_util else None,  # %, from the monitor
        "peak_trial_gpu_mem_mb": max(trial_mem) if trial_mem else None,  # PyTorch's, the largest trial's
        "peak_card_gpu_mem_mb": max(card_mem) if card_mem else None,  # NVML's, the whole card
        "peak_rss_mb": max(rss) if rss else None,
        "best_trial_id": selected["trial_id"] if selected else None,
        "best_config": json.dumps({k: selected[f"config/{k}"] for k in task.space}) if selected else None,
    }
