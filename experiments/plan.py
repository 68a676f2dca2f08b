"""The typed, frozen values passed between the runner's modules.

``RunPlan`` is everything a run resolved before its first trial (recorded in run.json's
``resolved``); ``Method`` names one (searcher, scheduler, seed); ``MethodOutcome`` is the rows
one method adds to the run's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core.rules import method_name
from core.task import TaskSpec
from experiments.gpus import Gpu


@dataclass(frozen=True)
class Method:
    searcher: str
    scheduler: str
    seed: int

    @property
    def name(self) -> str:
        return method_name(self.searcher, self.scheduler, self.seed)

    def identity(self, task: str) -> dict:
        """The columns every row of this method carries (core.records.METHOD_COLUMNS)."""
        return {"task": task, "searcher": self.searcher, "scheduler": self.scheduler, "seed": self.seed}


@dataclass(frozen=True)
class RunPlan:
    """What every method of a run shares, resolved once."""

    task: TaskSpec  # at the run's budget
    num_samples: int  # trials per sampling searcher
    max_concurrent: int  # trials at once
    resources: Mapping[str, float]  # one trial's request: {"cpu": ..., "gpu": ...}
    # Joins every trial's config unsearched: the task's resolved options (data folder, model, ...)
    # and record_test_curves where asked for.
    fixed_config: Mapping[str, Any] = field(default_factory=dict)
    max_failures: int = 0  # Ray's FailureConfig: retries of a failed trial
    gpu: Gpu | None = None  # the GPU the run is pinned to; None: none (or the cluster's)
    keep_checkpoints: str = "all"  # experiments.spec.KEEP_CHECKPOINTS; runs set it from the spec
    # --gpus-per-trial auto: memory class -> GPU share (experiments.packing); empty: every trial
    # asks for resources["gpu"] (then the largest share: what scoring a pick holds)
    gpu_shares: Mapping[str, float] = field(default_factory=dict)
    # a pausing scheduler's disk budget for paused trials' training states (searchers.promotion); None: none
    pause_disk_gb: float | None = None
    # --time-budget: the compute each method may spend (experiments.budget), in GPU-seconds where trials
    # hold a GPU share, else trial-seconds; None: no budget (each method runs its trials)
    time_budget_s: float | None = None

    @property
    def compute_unit(self) -> str:
        return "gpu_seconds" if self.gpus_per_trial else "trial_seconds"

    @property
    def gpus_per_trial(self) -> float:
        return float(self.resources.get("gpu", 0.0))

    def resource_request(self):
        """What tune.with_resources gets: one request for every trial, or a share per memory class."""
        if self.gpu_shares:
            from experiments.packing import SharePerConfig

            return SharePerConfig(self.task, float(self.resources["cpu"]), self.gpu_shares)
        return dict(self.resources)

    def resolved(self, options: Mapping[str, Any]) -> dict:
        """run.json's ``resolved`` section (its keys are part of the run-folder contract)."""
        task = self.task
        return {"task": task.name, "space": {k: list(v) for k, v in task.space.items()}, "grid_size": task.grid_size,
                "task_options": dict(options), "gpu_id": self.gpu.index if self.gpu else None,
                "gpu_uuid": self.gpu.uuid if self.gpu else None, "num_samples": self.num_samples,
                "max_concurrent": self.max_concurrent, "resources": dict(self.resources), "metric": task.metric,
                "mode": task.mode, "metrics": list(task.metrics), "max_t": task.max_t, "epochs_param": task.epochs_param,
                "resource_attr": task.resource_attr, "grace_period": task.grace_period,
                "reduction_factor": task.reduction_factor, "gpu_shares": dict(self.gpu_shares),
                "pause_disk_gb": self.pause_disk_gb, "time_budget_s": self.time_budget_s,
                "compute_unit": self.compute_unit}

    @classmethod
    def from_resolved(cls, task: TaskSpec, resolved: Mapping[str, Any], *, record_test_curves: bool,
                      max_failures: int, gpus: list[Gpu], keep_checkpoints: str = "all") -> "RunPlan":
        """The plan a run.json was written from (for --resume); ``gpus``: the visible ones now,
        among which the run's card is found again by its UUID."""
        gpu = None
        if resolved.get("gpu_id") is not None:
            uuid = resolved.get("gpu_uuid")
            found = [g for g in gpus if g.uuid == uuid] if uuid else [g for g in gpus if g.index == resolved["gpu_id"]]
            if not found:
                raise ValueError(f"the run was pinned to GPU {resolved['gpu_id']} ({uuid or 'no UUID recorded'}), "
                                 "which is not visible now")
            gpu = found[0]
        return cls(task=task, num_samples=int(resolved["num_samples"]),
                   max_concurrent=int(resolved["max_concurrent"]), resources=dict(resolved["resources"]),
                   fixed_config=fixed_config(resolved["task_options"], record_test_curves),
                   max_failures=max_failures, gpu=gpu, keep_checkpoints=keep_checkpoints,
                   gpu_shares=dict(resolved.get("gpu_shares") or {}), pause_disk_gb=resolved.get("pause_disk_gb"),
                   time_budget_s=resolved.get("time_budget_s"))


def fixed_config(options: Mapping[str, Any], record_test_curves: bool) -> dict:
    return {**options, "record_test_curves": True} if record_test_curves else dict(options)


@dataclass(frozen=True)
class MethodOutcome:
    """The rows one (searcher, scheduler, seed) adds to trials.csv, curves.csv and summary.csv."""

    trials: tuple[dict, ...] = ()
    curves: tuple[dict, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> Method:
        s = self.summary
        return Method(s["searcher"], s["scheduler"], int(s["seed"]))
