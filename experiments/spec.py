"""The experiment spec: everything a run needs, validated once, before anything is written.

Validation errors are ``SpecError`` with one line naming the bad value and the allowed ones;
``run_all.py`` prints it and exits with status 2.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.rules import method_label
from experiments.packing import AUTO
from searchers import (DEFAULT_METHODS, DEFAULT_SCHEDULER, EXPERIMENTAL_SCHEDULERS, PAIRED, SCHEDULERS, SEARCHERS,
                       STAR_SCHEDULERS, pairing_error)
from trainables import TASK_MODULES, get_task

BUDGETS = ("smoke", "full")
RECOMMENDED = "recommended"  # --methods recommended: one method, chosen from the run's budget
RECOMMENDED_METHOD = (RECOMMENDED, RECOMMENDED)  # its place in a methods tuple until the run resolves it
# What a run compares when no methods are named: the seed's plan (searchers.DEFAULT_METHODS: the
# baselines, TPE and BayesOpt under ASHA, and random search under ASHA as the control) and, beside
# it, the method the evidence recommends for the run's budget.
DEFAULT_RUN_METHODS = (*DEFAULT_METHODS, RECOMMENDED_METHOD)
# With --time-budget and no --num-samples, a sampling method runs until its budget is spent; this
# many times the grid's size in trials is only a guard (ASHA starts many short trials).
BUDGET_TRIAL_GUARD = 10
# which trial checkpoints stay on disk (experiments/checkpoints.py): the run's best pick, every
# method's pick, or all
KEEP_CHECKPOINTS = ("best", "picks", "all")


class SpecError(ValueError):
    """A bad experiment setting; its message is one line meant for the user."""

    def _render_traceback_(self) -> list[str]:
        # IPython and Jupyter show what this returns instead of the traceback: the one line, as
        # the command line prints it (the traceback would only show our own validation code)
        return [f"{type(self).__name__}: {self}"]


class StorageFailed(Exception):
    """A write to the run folder (or Tune's storage) was refused: a full or read-only disk, a quota.
    The run stopped; every file on disk is whole (atomic writers) and --resume continues it."""


class RunFailed(Exception):
    """The run finished and wrote its tables, but a method has no trial with a result (every trial
    failed): nothing to compare or pick. One line for the user; run_all exits 1."""


def parse_methods(text: str, schedulers=SCHEDULERS) -> tuple[tuple[str, str], ...]:
    """``"grid,random:asha,bayesopt:*"`` -> (searcher, scheduler) pairs; the one meaning of
    ``--methods`` for real runs and the replay benchmark.

    A searcher named alone gets its default scheduler (``searchers.DEFAULT_SCHEDULER``: fifo
    for grid and random, asha for the model-based searchers); ``searcher:*`` means that
    searcher with fifo and asha (every scheduler but the replay-only ones, which are named).
    """
    methods = []
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise SpecError(f"--methods {text!r} is malformed; expected e.g. 'grid,random,hyperopt:asha,bayesopt:*'")
    for item in items:
        if item == RECOMMENDED:  # the method the evidence picks for the run's budget (experiments.recommend)
            if RECOMMENDED_METHOD in methods:
                raise SpecError("recommended is named twice in --methods")
            methods.append(RECOMMENDED_METHOD)
            continue
        searcher, sep, scheduler = item.partition(":")
        if searcher not in SEARCHERS:
            raise SpecError(f"unknown searcher {searcher!r} in --methods; allowed: {', '.join(SEARCHERS)}")
        if sep and scheduler != "*" and scheduler not in schedulers:
            raise SpecError(unknown_scheduler(scheduler, schedulers) + " or *")
        star = [PAIRED[searcher][0]] if searcher in PAIRED else list(STAR_SCHEDULERS)
        named = star if scheduler == "*" else [scheduler if sep else DEFAULT_SCHEDULER[searcher]]
        for s in named:
            if pairing_error(searcher, s):
                raise SpecError(pairing_error(searcher, s))
        for pair in ((searcher, s) for s in named):
            if pair in methods:
                raise SpecError(f"method {method_label(*pair)} is named twice in --methods")
            methods.append(pair)
    return tuple(methods)


def unknown_scheduler(name: str, schedulers) -> str:
    """The one line for a scheduler a run does not offer: an experimental variant says where it went."""
    if name in EXPERIMENTAL_SCHEDULERS and name not in schedulers:
        return (f"scheduler {name!r} is a variant measured and not taken (docs/results/variants-tried.md); real runs do "
                f"not offer it, the replay does (python -m experiments.replay ... --methods random:{name}); "
                f"allowed: {', '.join(schedulers)}")
    return f"unknown scheduler {name!r} in --methods; allowed: {', '.join(schedulers)}"


def resolve_recommended(methods, chosen: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """``methods`` with ``recommended`` replaced by the method chosen for the run's budget (named once:
    where the list names it already, the placeholder goes)."""
    out = []
    for pair in methods:
        pair = chosen if pair == RECOMMENDED_METHOD else tuple(pair)
        if pair not in out:
            out.append(pair)
    return tuple(out)


def format_methods(methods) -> str:
    """The inverse of ``parse_methods``: ``"grid:fifo,random:asha"``."""
    return ",".join(RECOMMENDED if (searcher, scheduler) == RECOMMENDED_METHOD else method_label(searcher, scheduler)
                    for searcher, scheduler in methods)


# The largest seed every searcher takes: numpy's RandomState (Ray's random search, HyperOpt's
# constructor) accepts 0..2**32-1; a larger one was accepted and failed minutes later, in HyperOpt.
MAX_SEED = 2**32 - 1


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0"`` or ``"0,1,2"`` -> (0, 1, 2): the seeds, each an integer in 0..MAX_SEED."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise SpecError(f"--seeds {text!r} does not parse; expected non-negative integers like '0' or '0,1,2'") from None
    check_seeds(seeds, text)
    return seeds


def check_seeds(seeds, text=None) -> None:
    shown = text if text is not None else ",".join(map(str, seeds))
    if any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
        raise SpecError(f"--seeds {shown!r}: every seed must be an integer")
    if any(s < 0 for s in seeds):
        raise SpecError(f"--seeds {shown!r} has a negative seed; expected non-negative integers like '0,1,2'")
    if any(s > MAX_SEED for s in seeds):
        raise SpecError(f"--seeds {shown!r} has a seed above {MAX_SEED} (2**32 - 1), the largest every searcher takes")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"--seeds {shown!r} names a seed twice")


def is_uri(location: str) -> bool:
    """A pyarrow file-system URI (s3://bucket/x, gs://...) rather than a local path."""
    return "://" in str(location)


def check_writable_dir(path: Path, flag: str = "--results-dir") -> None:
    """Raise SpecError unless ``path`` is, or could be created as, a writable folder.

    Creates nothing: the nearest existing ancestor must be a writable folder.
    """
    probe = Path(path).absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise SpecError(f"{flag} {str(path)!r} cannot be written: {str(probe)!r} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"{flag} {str(path)!r} cannot be written: no write permission on {str(probe)!r}")
    try:  # root passes os.access on a read-only file system; ask the file system itself
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise SpecError(f"{flag} {str(path)!r} cannot be written: {str(probe)!r} is on a read-only file system")
    except AttributeError:  # pragma: no cover - platforms without statvfs
        pass


@dataclass(frozen=True)
class ExperimentSpec:
    task: str = "breast_cancer"
    methods: tuple[tuple[str, str], ...] = DEFAULT_RUN_METHODS
    num_samples: int | None = None  # trials per sampling method; None: a quarter of the grid
    seeds: tuple[int, ...] = (0,)
    budget: str = "full"
    results_dir: Path = Path("results")
    max_concurrent: int | None = None  # trials at once; None: as many as the CPUs hold
    cpus_per_trial: float | None = None  # None: the task's default
    ray_address: str | None = None  # connect to an existing Ray cluster instead of starting one
    gpu_id: int | None = None  # the one GPU the run is pinned to; None: the first GPU, if any
    # GPU fraction per trial (0.25 packs four; 0: CPU); "auto": each trial's by measured memory
    # (experiments.packing); None: the task's
    gpus_per_trial: float | str | None = None
    monitor_interval: float = 1.0  # seconds between resource samples
    # Also score the test split after every epoch, into curves.csv (tables for the replay
    # benchmark). The trials' reports carry it; searchers and schedulers read only the metric.
    record_test_curves: bool = False
    # Ray's FailureConfig: a failed trial (an out-of-memory error on a shared GPU, say) is
    # retried this many times, from scratch (trials checkpoint only at their end).
    max_failures: int = 2
    # Task options given on the command line (data_dir, model, subset, cache_dir); the task
    # checks them and supplies the defaults of the others (TaskSpec.resolve_options).
    task_options: dict = field(default_factory=dict)
    keep_checkpoints: str = "best"  # KEEP_CHECKPOINTS
    quiet: bool = False  # only errors and the final table
    # Where Ray Tune keeps the trial folders: a path every node of a cluster can reach (NFS) or
    # a pyarrow URI (s3://, gs://); None: the run folder's tune/. See is_uri.
    storage: str | None = None
    # Disk for paused trials' training states under a pausing scheduler (--methods x:promotion);
    # beyond it the lowest-ranked paused trials are stopped for good. None: DEFAULT_PAUSE_DISK_GB.
    pause_disk_gb: float | None = None
    # --time-budget: the compute each method may spend, in seconds (experiments.budget); None: none
    time_budget: float | None = None

    def __post_init__(self):
        if self.task not in TASK_MODULES:  # a user's task file or module: imported and checked now
            try:
                get_task(self.task)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
        if not self.methods:
            raise SpecError("no methods to run; name at least one in --methods")
        for searcher, scheduler in self.methods:
            if (searcher, scheduler) == RECOMMENDED_METHOD:
                continue
            if searcher not in SEARCHERS:
                raise SpecError(f"unknown searcher {searcher!r}; allowed: {', '.join(SEARCHERS)}")
            if scheduler not in SCHEDULERS:
                raise SpecError(unknown_scheduler(scheduler, SCHEDULERS))
            if pairing_error(searcher, scheduler):
                raise SpecError(pairing_error(searcher, scheduler))
        if self.num_samples is not None and self.num_samples < 1:
            raise SpecError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not self.seeds:
            raise SpecError("no seeds given; pass --seeds like '0' or '0,1,2'")
        check_seeds(self.seeds)
        if self.budget not in BUDGETS:
            raise SpecError(f"unknown budget {self.budget!r}; allowed: {', '.join(BUDGETS)}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise SpecError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.cpus_per_trial is not None and not (self.cpus_per_trial > 0 and math.isfinite(self.cpus_per_trial)):
            raise SpecError(f"--cpus-per-trial must be a positive number, got {self.cpus_per_trial}")
        if self.gpus_per_trial is not None and self.gpus_per_trial != AUTO and not (
                isinstance(self.gpus_per_trial, (int, float)) and 0 <= self.gpus_per_trial <= 1):
            raise SpecError(f"--gpus-per-trial must be in [0, 1] (0: trials on the CPU) or auto, got {self.gpus_per_trial}")
        if self.gpu_id is not None and self.ray_address:
            raise SpecError("--gpu-id pins a local run to one card; with --ray-address the cluster places trials on "
                            "its own GPUs (restrict them with CUDA_VISIBLE_DEVICES when starting its nodes)")
        if self.gpu_id is not None and self.gpu_id < 0:
            raise SpecError(f"--gpu-id must be a GPU index (0, 1, ...), got {self.gpu_id}")
        if not (self.monitor_interval > 0 and math.isfinite(self.monitor_interval)):
            raise SpecError(f"--monitor-interval must be a positive number of seconds, got {self.monitor_interval}")
        if self.task_options.get("subset") is not None and self.task_options["subset"] < 1:
            raise SpecError(f"--subset must be at least 1, got {self.task_options['subset']}")
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise SpecError(f"unknown --keep-checkpoints {self.keep_checkpoints!r}; allowed: {', '.join(KEEP_CHECKPOINTS)}")
        if self.pause_disk_gb is not None and not (self.pause_disk_gb > 0 and math.isfinite(self.pause_disk_gb)):
            raise SpecError(f"--pause-disk-gb must be a positive number of GB, got {self.pause_disk_gb}")
        if self.time_budget is not None and not (isinstance(self.time_budget, (int, float)) and
                                                 not isinstance(self.time_budget, bool) and
                                                 0 < self.time_budget < math.inf):
            raise SpecError(f"--time-budget must be a positive number of seconds (or 90m, 4h), got {self.time_budget!r}")
        if self.max_failures < 0:
            raise SpecError(f"--max-failures must be 0 or more, got {self.max_failures}")
        check_writable_dir(self.results_dir)
        if self.storage is not None and not is_uri(self.storage):
            check_writable_dir(Path(self.storage), flag="--storage")

    def resolved_num_samples(self, task) -> int:
        """Trials per sampling method: as given, else the smoke budget's, else a quarter of the grid."""
        if self.num_samples is not None:
            return self.num_samples
        if self.time_budget is not None:
            return BUDGET_TRIAL_GUARD * task.grid_size
        if self.budget == "smoke":
            return task.smoke_num_samples
        return math.ceil(task.grid_size / 4)
