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

from experiments.spec import ExperimentSpec, SpecError

PACKAGES = ("ray", "torch", "hyperopt", "bayesian-optimization", "scikit-learn", "numpy", "pandas",
            "transformers", "datasets", "torchvision")


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
    cpus = cpus_per_trial if cpus_per_trial is not None else task.cpus_per_trial
    gpus = gpus_per_trial if gpus_per_trial is not None else task.gpus_per_trial
    return {"cpu": cpus, "gpu": gpus if ray.cluster_resources().get("GPU", 0) > 0 else 0.0}


def default_max_concurrent(resources: dict[str, float]) -> int:
    """As many trials as the cluster's CPUs (and GPUs, where asked for) hold at once."""
    cluster = ray.cluster_resources()
    limit = math.floor(cluster.get("CPU", 1) / resources["cpu"])
    if resources.get("gpu"):
        limit = min(limit, math.floor(cluster.get("GPU", 0) / resources["gpu"]))
    return max(1, limit)
