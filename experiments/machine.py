"""The machine a run uses: which GPU it is pinned to, Ray started (or joined) accordingly,
each trial's resource request and the concurrency they allow, and the provenance recorded in
run.json (package versions, git commit, device)."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

from core.rules import training_precision
from experiments.console import filter_ray_noise
from experiments.gpus import Gpu, mps_running, pinned_environment
from experiments.packing import given_share, trials_at_once
from experiments.spec import ExperimentSpec, SpecError

PACKAGES = ("ray", "torch", "hyperopt", "bayesian-optimization", "scikit-learn", "numpy", "pandas",
            "transformers", "datasets", "torchvision")


def choose_gpu(spec: ExperimentSpec, gpus: list[Gpu], task_share: float = 0.0) -> Gpu | None:
    """The GPU the run is pinned to (None: no GPU), or SpecError for a GPU that is not there or that
    cannot take the trials' share. ``gpus``: the visible ones (``gpus.visible_gpus``), numbered as
    --gpu-id counts them; ``task_share``: the task's GPU fraction where --gpus-per-trial is not given."""
    if spec.ray_address:  # the cluster places trials on its own GPUs (--gpu-id is refused with it)
        return None
    listed = ", ".join(f"{g.index} ({g.name})" for g in gpus) or "none"
    if spec.gpu_id is not None and spec.gpu_id >= len(gpus):
        raise SpecError(f"--gpu-id {spec.gpu_id} does not exist; GPUs here: {listed}"
                        + (" (CUDA_VISIBLE_DEVICES limits them)" if "CUDA_VISIBLE_DEVICES" in os.environ else ""))
    if spec.gpus_per_trial and not gpus:
        raise SpecError(f"--gpus-per-trial {spec.gpus_per_trial} asks for a GPU, but none was found (NVML lists "
                        "none); leave it out to run on the CPU")
    if not gpus:
        return None
    gpu = gpus[spec.gpu_id if spec.gpu_id is not None else 0]
    given = given_share(spec.gpus_per_trial)
    share = given if given is not None else task_share
    if gpu.exclusive_process and share is not None and 0 < share < 1 and not mps_running():
        # one CUDA context at a time: the second packed trial would fail to create its own
        raise SpecError(f"GPU {gpu.index} ({gpu.name}) is in exclusive-process compute mode: --gpus-per-trial "
                        f"{share:g} packs trials that cannot share it; use --gpus-per-trial 1, start NVIDIA MPS "
                        "(nvidia-cuda-mps-control -d), or ask for the card in default compute mode")
    return gpu


def start_ray(ray_address: str | None = None, gpu: Gpu | None = None, task_file: str | None = None) -> None:
    """Connect to ``ray_address`` or start a local Ray pinned to ``gpu`` (Ray is told of one
    GPU, or none); keep a Ray the caller already started. ``task_file``: a user's task file, made
    importable by its workers (trainables' docstring says how and why)."""
    filter_ray_noise()
    if ray.is_initialized():
        return
    # Tune's plain progress output (the new console output prints boxes even at verbose=0).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray_address:
        runtime_env = {"py_modules": [task_file]} if task_file else None  # copied to every node
        ray.init(address=ray_address, log_to_driver=False, runtime_env=runtime_env)
        return
    if task_file:  # before Ray starts: its workers inherit the environment
        folder = os.path.dirname(task_file)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
    if gpu is not None:
        os.environ.update(pinned_environment(gpu, os.environ))  # before Ray starts: its workers inherit it
    # address="local": a new instance, never a cluster that `ray start` left running on this
    # machine (its workers would not see the card pinned above); --ray-address joins one
    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_gpus=1 if gpu is not None else 0)


def preflight(resources: dict[str, float]) -> dict:
    """A Ray task holding one trial's resources runs what every trial first does on its GPU
    (trainables.base.preflight: the device Ray assigns, an autocast matmul there); SpecError with
    the task's one-line reason where it fails, so a broken CUDA setup stops the run before it starts
    instead of failing each trial in turn."""
    from trainables.base import preflight as on_the_device

    task = ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"], max_calls=1, max_retries=0)(on_the_device)
    try:
        return ray.get(task.remote(), timeout=300)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        raise SpecError(f"the GPU preflight failed: {str(cause).splitlines()[0]}") from None
    except (ray.exceptions.RayError, TimeoutError) as exc:
        raise SpecError(f"the GPU preflight did not run ({type(exc).__name__}); check the GPU and Ray's placement, "
                        "or run with --gpus-per-trial 0") from None


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


def describe_device(gpus: list[Gpu]) -> dict[str, Any]:
    """The machine the trials ran on; ``gpus``: the visible ones, as NVML read them."""
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # the precision trials on each card train in (core.rules.training_precision, the trials' own rule)
        "gpus": [{"id": g.index, "name": g.name, "uuid": g.uuid, "memory_total_mb": g.memory_total_mb,
                  "compute_capability": list(g.compute_capability) if g.compute_capability else None,
                  "precision": training_precision(g.compute_capability) if g.compute_capability else None}
                 for g in gpus],
        "ray_cluster_resources": ray.cluster_resources(),
    }


def trial_resources(task, cpus_per_trial: float | None, gpus_per_trial: float | None = None) -> dict[str, float]:
    """The resource request of one trial: as given, else the task's defaults; a GPU fraction
    only where the cluster has a GPU."""
    cpus = cpus_per_trial if cpus_per_trial is not None else task.cpus_per_trial
    # auto: the task's share until the probe has measured each trial's (experiments.packing)
    given = given_share(gpus_per_trial)
    gpus = given if given is not None else task.gpus_per_trial
    return {"cpu": float(cpus), "gpu": float(gpus) if ray.cluster_resources().get("GPU", 0) > 0 else 0.0}


def default_max_concurrent(resources: dict[str, float]) -> int:
    """As many trials as the cluster's CPUs (and GPUs, where asked for) hold at once."""
    cluster = ray.cluster_resources()
    limit = math.floor(cluster.get("CPU", 1) / resources["cpu"])
    if resources.get("gpu"):
        limit = min(limit, trials_at_once(resources["gpu"], cluster.get("GPU", 0)))
    return max(1, limit)
