"""Run an experiment: one Ray Tune ``Tuner`` per method and seed, into one run folder.

``run(spec)`` creates ``<results-dir>/<task>/<run-id>/`` (DESIGN.md's run-folder contract),
starts Ray (or connects to a cluster), tunes each (searcher, scheduler, seed) in turn, scores
each method's selected configuration on the test split, and rewrites the tables atomically
after every method, so whatever finished is on disk even if the run is interrupted.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments import records
from experiments.records import COMPLETED, DIVERGED, FAILED, STOPPED
from experiments.spec import ExperimentSpec, SpecError
from searchers import SCHEDULERS, SEARCHERS, MethodArgs
from trainables import get_task

PACKAGES = ("ray", "torch", "hyperopt", "bayesian-optimization", "scikit-learn", "numpy", "pandas",
            "transformers", "datasets", "torchvision")


def method_name(searcher: str, scheduler: str, seed: int) -> str:
    """The method's Tune folder under ``tune/``: ``<searcher>-<scheduler>-s<seed>``."""
    return f"{searcher}-{scheduler}-s{seed}"


def trial_dirname(trial) -> str:
    # Short names: Ray's default packs the whole config into the folder name.
    return f"trial_{trial.trial_id}"


def create_run_dir(results_dir: Path, task_name: str) -> Path:
    """A new, empty run folder: ``<results_dir>/<task>/<UTC time>-<random>``; never an existing one."""
    parent = Path(results_dir) / task_name
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        try:
            (parent / run_id).mkdir()  # exclusive: two runs in the same second get different folders
            return parent / run_id
        except FileExistsError:
            continue


def list_gpus() -> list:
    """The machine's GPUs as GPUtil sees them (nvidia-smi); empty where there is none."""
    try:
        import GPUtil

        return GPUtil.getGPUs()
    except Exception:  # GPUtil raises where nvidia-smi is missing or fails: no GPU
        return []


def choose_gpu(spec: ExperimentSpec, gpus: list) -> int | None:
    """The GPU the run is pinned to (None: no GPU), or SpecError for a GPU that is not there."""
    ids = [g.id for g in gpus]
    if spec.ray_address:  # the cluster places trials on its own GPUs
        return None
    if spec.gpu_id is not None and spec.gpu_id not in ids:
        raise SpecError(f"--gpu-id {spec.gpu_id} does not exist; GPUs here: {', '.join(map(str, ids)) or 'none'}")
    if spec.gpus_per_trial is not None and not ids:
        raise SpecError(f"--gpus-per-trial {spec.gpus_per_trial} asks for a GPU, but none was found (nvidia-smi lists "
                        "none); leave it out to run on the CPU")
    if not ids:
        return None
    return spec.gpu_id if spec.gpu_id is not None else ids[0]


def start_ray(ray_address: str | None = None, gpu_id: int | None = None) -> None:
    """Connect to ``ray_address`` or start a local Ray pinned to ``gpu_id`` (Ray is told of one
    GPU, or none); keep a Ray the caller already started."""
    import ray

    if ray.is_initialized():
        return
    # Tune's plain progress output (the new console output prints boxes even at verbose=0).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
        return
    if gpu_id is not None:
        # Set before Ray starts, so every worker sees only this GPU, in nvidia-smi's numbering.
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_id)
    ray.init(include_dashboard=False, log_to_driver=False, num_gpus=1 if gpu_id is not None else 0)


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def describe_device() -> dict[str, Any]:
    """The machine the trials ran on. GPUs are read through GPUtil (nvidia-smi), not invented."""
    import ray

    gpus = []
    try:
        import GPUtil

        gpus = [{"id": g.id, "name": g.name, "memory_total_mb": g.memoryTotal} for g in GPUtil.getGPUs()]
    except Exception:  # GPUtil raises when nvidia-smi is missing or fails: no GPU to describe
        gpus = []
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": gpus,
        "ray_cluster_resources": ray.cluster_resources(),
    }


def trial_resources(task, cpus_per_trial: float | None, gpus_per_trial: float | None = None) -> dict[str, float]:
    """The resource request of one trial: as given, else the task's defaults; a GPU fraction
    only where the cluster has a GPU."""
    import ray

    cpus = cpus_per_trial if cpus_per_trial is not None else task.cpus_per_trial
    gpus = gpus_per_trial if gpus_per_trial is not None else task.gpus_per_trial
    return {"cpu": cpus, "gpu": gpus if ray.cluster_resources().get("GPU", 0) > 0 else 0.0}


def default_max_concurrent(resources: dict[str, float]) -> int:
    """As many trials as the cluster's CPUs (and GPUs, where asked for) hold at once."""
    import ray

    cluster = ray.cluster_resources()
    limit = math.floor(cluster.get("CPU", 1) / resources["cpu"])
    if resources.get("gpu"):
        limit = min(limit, math.floor(cluster.get("GPU", 0) / resources["gpu"]))
    return max(1, limit)


@dataclass
class MethodOutcome:
    """The rows one (searcher, scheduler, seed) adds to the run's tables."""

    trials: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def tune_method(task, searcher: str, scheduler: str, seed: int, num_samples: int, max_concurrent: int,
                resources: dict[str, float], storage_path: Path, callbacks: list | None = None,
                fixed_config: dict | None = None, max_failures: int = 0, resume: bool = False):
    """Run one method through a Ray Tune ``Tuner``; returns (ResultGrid, start time, wall seconds).

    ``fixed_config`` joins every trial's config unsearched (data options such as a data folder).
    ``max_failures``: Ray's FailureConfig, how often a failed trial is retried (an out-of-memory
    error is often transient on a shared GPU). ``resume``: continue the method's Tune folder
    under ``storage_path`` with ``Tuner.restore`` (trials that finished are kept, the searcher's
    state is restored, unfinished trials start again).
    """
    from ray import tune

    from experiments.callbacks import SchedulerState

    # The snapshot after every trial's checkpoint (num_to_keep=1, below) is deliberate: Tune's
    # warning that snapshots come often would print on every fast task.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(task.trainable, resources)
    path = Path(storage_path).absolute() / method_name(searcher, scheduler, seed)
    if resume:
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
        started = time.time()
        results = tuner.fit()
        return results, started, time.time() - started

    args = MethodArgs(task=task, seed=seed, num_samples=num_samples, max_concurrent=max_concurrent)
    plan = SEARCHERS[searcher](args)
    trial_scheduler = SCHEDULERS[scheduler](args)
    tuner = tune.Tuner(
        trainable,
        # The seed travels in the config: trainables read nothing else.
        param_space={**plan.param_space, **(fixed_config or {}), "seed": seed},
        tune_config=tune.TuneConfig(
            metric=task.metric,
            mode=task.mode,
            search_alg=plan.search_alg,
            scheduler=trial_scheduler,
            num_samples=plan.num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,  # one worker process (and its loaded data) serves many trials
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=method_name(searcher, scheduler, seed),
            storage_path=str(Path(storage_path).absolute()),
            verbose=0,
            callbacks=[*(callbacks or []), SchedulerState(trial_scheduler)],
            # The checkpoint holds the best-validation weights that the test split scores.
            # num_to_keep makes Tune snapshot the experiment state after every checkpoint, that
            # is as each trial ends: a run killed at any moment resumes without rerunning a
            # finished trial (one snapshot per trial; trials checkpoint only at their end).
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True, num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )
    started = time.time()
    results = tuner.fit()
    return results, started, time.time() - started


def _error_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def collect_trials(results, task, searcher: str, scheduler: str, seed: int, started: float):
    """trials.csv and curves.csv rows, and the Result of each trial, from Tune's own results."""
    identity = {"task": task.name, "searcher": searcher, "scheduler": scheduler, "seed": seed}
    trials, curves, by_trial = [], [], {}
    # A Result carries no config or trial id for a trial that failed before its first report;
    # the Trial objects behind the ResultGrid (same order) always do.
    for trial, result in zip(results._experiment_analysis.trials, results):
        trial_id, config = trial.trial_id, trial.config
        frame = result.metrics_dataframe
        reports = last_attempt(frame.to_dict("records") if frame is not None and len(frame) else [])
        epochs = max((int(r["epoch"]) for r in reports if r.get("epoch") == r.get("epoch")), default=0)
        accuracies = [r["val_accuracy"] for r in reports if _number(r.get("val_accuracy")) is not None]
        if result.error is not None:
            status = FAILED
        elif any(r.get("diverged") is True for r in reports):
            status = DIVERGED
        elif epochs < int(config[task.epochs_param]):
            status = STOPPED
        else:
            status = COMPLETED
        trials.append({
            **identity, "trial_id": trial_id, "status": status,
            **{f"config/{name}": config.get(name) for name in task.space},
            "epochs": epochs,
            "best_val_accuracy": max(accuracies) if accuracies else None,
            "final_val_accuracy": accuracies[-1] if accuracies else None,
            "train_seconds": _number(result.metrics.get("time_total_s")) or 0.0,
            "samples_per_second": (sum(r["samples_per_second"] for r in reports) / len(reports)
                                   if reports and all(_number(r.get("samples_per_second")) for r in reports) else None),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in reports if _number(r.get("peak_rss_mb"))), default=None),
            "peak_gpu_mem_mb": max((r["peak_gpu_mem_mb"] for r in reports
                                    if _number(r.get("peak_gpu_mem_mb")) is not None), default=None),
            "error": _error_line(result.error) if result.error is not None else "",
        })
        by_trial[trial_id] = result
        for r in reports:
            curves.append({
                **identity, "trial_id": trial_id, "epoch": int(r["epoch"]),
                **{name: r.get(name) for name in ("val_accuracy", "val_f1", "val_auc", "val_loss", "epoch_seconds")
                   + records.TEST_CURVE_METRICS},
                # our trainables stamp each epoch's end; Ray's own timestamp is whole seconds
                "wall_seconds": (_number(r.get("end_time")) or r["timestamp"]) - started,
            })
    curves.sort(key=lambda c: (c["wall_seconds"], c["trial_id"], c["epoch"]))
    return trials, curves, by_trial


def last_attempt(reports: list[dict]) -> list[dict]:
    """The reports of a trial's last attempt: a trial retried after a failure, or restarted on
    resume, starts again at epoch 1 and Tune appends its reports to the earlier ones."""
    start = 0
    for i in range(1, len(reports)):
        previous, epoch = reports[i - 1].get("epoch"), reports[i].get("epoch")
        if _number(epoch) is not None and _number(previous) is not None and epoch <= previous:
            start = i
    return reports[start:]


def select_trial(trials: list[dict]) -> dict | None:
    """The method's pick: highest best validation accuracy; ties go to the trial trained longest,
    then to the one started first. Failed trials are never picked."""
    candidates = [t for t in trials if t["status"] != FAILED and t["best_val_accuracy"] is not None]
    if not candidates:
        return None
    return max(enumerate(candidates), key=lambda it: (it[1]["best_val_accuracy"], it[1]["epochs"], -it[0]))[1]


def evaluate_selected(task, result, resources: dict[str, float]) -> dict[str, float]:
    """Score a trial's best-validation weights on the test split.

    With a GPU, in a Ray task holding the trial's resources (placed and accounted like a
    trial); on the CPU, in this process, which has the task's modules loaded already (a fresh
    Ray worker would spend seconds importing torch for a millisecond evaluation)."""
    from trainables.base import evaluate_checkpoint

    if result.checkpoint is None:
        return {}
    args = (task.trainable, result.config, result.checkpoint.path, "test")
    if not resources.get("gpu"):
        return evaluate_checkpoint(*args)
    import ray

    remote = ray.remote(evaluate_checkpoint).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
    return ray.get(remote.remote(*args))


def summarize_method(task, searcher, scheduler, seed, trials, wall_seconds, test_metrics, selected,
                     gpus_per_trial: float, samples: list[dict] | None = None) -> dict:
    """The summary row of one method. ``samples``: the resource monitor's rows of this method;
    peak memory is theirs (driver plus Ray workers; GPU memory as nvidia-smi reports it) where
    there are any, else the largest that a trial reported of its own process."""
    samples = samples or []
    trial_seconds = sum(t["train_seconds"] for t in trials)
    rss = [s["rss_mb"] for s in samples] or [t["peak_rss_mb"] for t in trials if t["peak_rss_mb"] is not None]
    gpu_util = [s["gpu_util"] for s in samples if s["gpu_util"] is not None]
    gpu_mem = ([s["gpu_mem_mb"] for s in samples if s["gpu_mem_mb"] is not None]
               + [t["peak_gpu_mem_mb"] for t in trials if t["peak_gpu_mem_mb"] is not None])
    return {
        "task": task.name, "searcher": searcher, "scheduler": scheduler, "seed": seed,
        "n_trials": len(trials),
        "n_failed": sum(t["status"] == FAILED for t in trials),
        "epochs_trained": sum(t["epochs"] for t in trials),
        "best_val_accuracy": selected["best_val_accuracy"] if selected else None,
        "test_accuracy": test_metrics.get("accuracy"),
        "test_f1": test_metrics.get("f1"),
        "test_auc": test_metrics.get("auc"),
        "wall_seconds": wall_seconds,
        "trial_seconds": trial_seconds,
        # GPU-seconds are trial time x GPU fraction; absent (not zero) where no GPU was used.
        "gpu_seconds": trial_seconds * gpus_per_trial if gpus_per_trial > 0 else None,
        "mean_gpu_util": sum(gpu_util) / len(gpu_util) if gpu_util else None,  # %, from the monitor
        "peak_gpu_mem_mb": max(gpu_mem) if gpu_mem else None,
        "peak_rss_mb": max(rss) if rss else None,
        "best_trial_id": selected["trial_id"] if selected else None,
        "best_config": json.dumps({k: selected[f"config/{k}"] for k in task.space}) if selected else None,
    }


def run_method(task, searcher, scheduler, seed, num_samples, max_concurrent, resources, run_dir: Path,
               fixed_config: dict | None = None, monitor=None, max_failures: int = 0,
               first_started: float | None = None) -> MethodOutcome:
    """Tune one method and score its pick. ``first_started``: when the method first started,
    for a method interrupted and now resumed (its Tune folder is continued, not restarted)."""
    if monitor is not None:
        monitor.set_method(searcher, scheduler, seed)
    try:
        results, started, wall = tune_method(task, searcher, scheduler, seed, num_samples, max_concurrent,
                                             resources, run_dir / "tune", fixed_config=fixed_config,
                                             max_failures=max_failures, resume=first_started is not None)
    finally:
        if monitor is not None:
            monitor.set_method(None)
    origin = started if first_started is None else first_started
    trials, curves, by_trial = collect_trials(results, task, searcher, scheduler, seed, origin)
    if first_started is not None:
        # Wall-clock of a resumed method: from its first start, less the time it lay dead
        # (from its last report before the resume to the resume).
        before = [c["wall_seconds"] for c in curves if c["wall_seconds"] + origin < started]
        wall += max(before, default=0.0)
    selected = select_trial(trials)
    test_metrics = evaluate_selected(task, by_trial[selected["trial_id"]], resources) if selected else {}
    samples = monitor.rows(searcher, scheduler, seed) if monitor is not None else None
    summary = summarize_method(task, searcher, scheduler, seed, trials, wall, test_metrics, selected,
                               resources.get("gpu", 0.0), samples)
    return MethodOutcome(trials=trials, curves=curves, summary=summary)


def write_tables(run_dir: Path, task, outcomes: list[MethodOutcome], monitor=None) -> None:
    from analysis.report import write_summary
    from experiments.monitor import RESOURCE_COLUMNS

    records.write_csv(run_dir / "trials.csv", records.trial_columns(task.space),
                      [row for o in outcomes for row in o.trials])
    records.write_csv(run_dir / "curves.csv", records.CURVE_COLUMNS, [row for o in outcomes for row in o.curves])
    records.write_csv(run_dir / "summary.csv", records.SUMMARY_COLUMNS, [o.summary for o in outcomes])
    if monitor is not None:
        records.write_csv(run_dir / "resources.csv", RESOURCE_COLUMNS, monitor.rows())
    write_summary(run_dir)


# the columns printed at the end of a run (summary.md has them all)
DISPLAY_COLUMNS = ("searcher", "scheduler", "seed", "n_trials", "epochs_trained", "best_val_accuracy",
                   "test_accuracy", "test_f1", "test_auc", "wall_seconds", "trial_seconds", "gpu_seconds")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run(spec: ExperimentSpec, echo=print) -> Path:
    """Run every method of ``spec`` and return the run folder.

    Every check that can fail on the user's input (task options, GPU choice) runs before the
    run folder is created."""
    task = get_task(spec.task).for_budget(spec.budget)
    try:
        options = task.resolve_options(spec.task_options)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    gpu_id = choose_gpu(spec, list_gpus())
    num_samples = spec.resolved_num_samples(task)
    run_dir = create_run_dir(spec.results_dir, task.name)
    start_ray(spec.ray_address, gpu_id)
    resources = trial_resources(task, spec.cpus_per_trial, spec.gpus_per_trial)
    max_concurrent = spec.max_concurrent or default_max_concurrent(resources)
    info = {
        "spec": {**asdict(spec), "results_dir": str(spec.results_dir)},
        "resolved": {"space": {k: list(v) for k, v in task.space.items()}, "grid_size": task.grid_size,
                     "task_options": options, "gpu_id": gpu_id,
                     "num_samples": num_samples, "max_concurrent": max_concurrent, "resources": resources,
                     "metric": task.metric, "mode": task.mode, "max_t": task.max_t,
                     "epochs_param": task.epochs_param, "resource_attr": task.resource_attr,
                     "grace_period": task.grace_period, "reduction_factor": task.reduction_factor},
        "versions": package_versions(),
        "git": git_commit(),
        "device": describe_device(),
        "started_at": _now(),
        "status": "running",
        "methods_started": {},  # Tune folder name -> time.time() when the method started
    }
    records.write_json(run_dir / "run.json", info)
    echo(f"run folder: {run_dir}")
    if not resources["gpu"]:
        echo("no GPU requested or available: trials run on the CPU; GPU figures are left empty")
    return _run_methods(spec, task, run_dir, info, [], echo)


class NotResumable(SpecError):
    """--resume was given a folder that is not an interrupted run (one line for the user)."""


def _read_rows(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def spec_from_info(info: dict) -> ExperimentSpec:
    """The ExperimentSpec a run.json was written from."""
    saved = dict(info["spec"])
    saved["methods"] = tuple(tuple(m) for m in saved["methods"])
    saved["seeds"] = tuple(saved["seeds"])
    saved["results_dir"] = Path(saved["results_dir"])
    known = ExperimentSpec.__dataclass_fields__
    return ExperimentSpec(**{k: v for k, v in saved.items() if k in known})


def resume(run_dir: Path, echo=print) -> Path:
    """Continue an interrupted run in its own folder: methods with a summary row are kept as
    they are; the interrupted one continues through ``Tuner.restore``; the rest run."""
    run_dir = Path(run_dir).absolute()
    if not (run_dir / "run.json").is_file():
        raise NotResumable(f"--resume {str(run_dir)!r} is not a run folder (no run.json)")
    try:
        info = json.loads((run_dir / "run.json").read_text())
        spec = spec_from_info(info)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise NotResumable(f"--resume {str(run_dir)!r}: run.json cannot be read back ({exc})") from None
    if info.get("status") == "finished":
        raise NotResumable(f"--resume {str(run_dir)!r}: the run has finished; there is nothing to resume")
    task = get_task(spec.task).for_budget(spec.budget)
    # The finished methods' rows, exactly as written (strings, as read), in the run's order.
    def method(row):
        return row["searcher"], row["scheduler"], int(row["seed"])

    summaries = {method(r): r for r in _read_rows(run_dir / "summary.csv")}
    trials, curves = _read_rows(run_dir / "trials.csv"), _read_rows(run_dir / "curves.csv")
    outcomes = [MethodOutcome(trials=[r for r in trials if method(r) == key],
                              curves=[r for r in curves if method(r) == key], summary=summaries[key])
                for key in ((s, c, seed) for seed in spec.seeds for s, c in spec.methods) if key in summaries]
    start_ray(spec.ray_address, info["resolved"].get("gpu_id"))
    info.setdefault("resumed_at", []).append(_now())
    info.setdefault("methods_started", {})
    records.write_json(run_dir / "run.json", info)
    echo(f"resuming {run_dir}: {len(outcomes)} of {len(spec.seeds) * len(spec.methods)} methods finished")
    return _run_methods(spec, task, run_dir, info, outcomes, echo)


def _run_methods(spec, task, run_dir: Path, info: dict, outcomes: list[MethodOutcome], echo) -> Path:
    """Run the methods of ``spec`` that ``outcomes`` does not hold yet, then finish the run."""
    from tensorboardX import SummaryWriter

    from analysis.report import build, format_table
    from experiments.monitor import RESOURCE_COLUMNS, ResourceMonitor

    resolved = info["resolved"]
    options, resources = resolved["task_options"], resolved["resources"]
    fixed = {**options, "record_test_curves": True} if spec.record_test_curves else options
    done = {(o.summary["searcher"], o.summary["scheduler"], int(o.summary["seed"])) for o in outcomes}
    writer = SummaryWriter(str(run_dir / "tensorboard" / "resources"))  # the monitor's timeline
    monitor = ResourceMonitor(task.name, spec.monitor_interval, gpu_id=resolved["gpu_id"], writer=writer)
    monitor.samples = _earlier_samples(run_dir / "resources.csv")
    try:
        with monitor:  # stops with the run, also on Ctrl-C or an error
            for seed in spec.seeds:
                for searcher, scheduler in spec.methods:
                    if (searcher, scheduler, seed) in done:
                        continue
                    name = method_name(searcher, scheduler, seed)
                    first_started = info["methods_started"].get(name)
                    if first_started is not None and not _restorable(run_dir / "tune" / name, echo):
                        first_started = None
                    if first_started is None:
                        info["methods_started"][name] = time.time()
                        records.write_json(run_dir / "run.json", info)
                    echo(f"{'resuming' if first_started else 'tuning'} {name} ...")
                    outcomes.append(run_method(task, searcher, scheduler, seed, resolved["num_samples"],
                                               resolved["max_concurrent"], resources, run_dir, fixed_config=fixed,
                                               monitor=monitor, max_failures=spec.max_failures,
                                               first_started=first_started))
                    write_tables(run_dir, task, outcomes, monitor)
    finally:
        writer.close()
    # The tables were written after every method; only the monitor's last samples are new.
    records.write_csv(run_dir / "resources.csv", RESOURCE_COLUMNS, monitor.rows())
    build(run_dir)  # plots and the final summary.md
    info.update(status="finished", finished_at=_now())
    records.write_json(run_dir / "run.json", info)
    echo(format_table([o.summary for o in outcomes], DISPLAY_COLUMNS))
    echo(f"summary and plots: {run_dir / 'summary.md'}, {run_dir / 'plots'}")
    return run_dir


def _earlier_samples(path: Path) -> list[dict]:
    """resources.csv rows of an interrupted run, so the resumed run's file keeps them."""
    import pandas as pd

    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def _newest_state(method_dir: Path) -> dict | None:
    """The newest experiment state Tune saved in a method folder; None where there is none
    yet or it cannot be read (a truncated file: ray issue 58179)."""
    states = sorted(Path(method_dir).glob("experiment_state-*.json"))
    try:
        return json.loads(states[-1].read_text()) if states else None
    except (OSError, ValueError):
        return None


def trial_statuses(method_dir: Path) -> dict[str, str]:
    """trial id -> status (PENDING, RUNNING, TERMINATED, ERROR) in the newest experiment state
    Tune saved in a method folder; empty where there is none yet or it cannot be read."""
    statuses = {}
    for entry in (_newest_state(method_dir) or {"trial_data": []})["trial_data"]:  # [trial JSON, run metadata JSON] per trial
        trial = json.loads(entry[0] if isinstance(entry, list) else entry)
        statuses[trial["trial_id"]] = trial["status"]
    return statuses


def _restorable(path: Path, echo) -> bool:
    """Whether Tune can continue the method folder ``path``; a folder it cannot read (killed
    before Tune's first snapshot, or a truncated snapshot: ray issue 58179) is moved aside,
    never deleted, and the method starts again."""
    from ray import tune

    if not path.exists():
        return False
    if _newest_state(path) is not None and tune.Tuner.can_restore(str(path)):
        return True
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    echo(f"{path.name}: Tune's state cannot be read back; moved to {aside.name} and the method starts again")
    return False
