"""The Ray parts of the GPU check (benchmarks/gpu_check.py runs them where Ray is installed): the
GPU Ray assigns a trial, and a CIFAR-10 and an IMDB smoke run through run_all.py with the GPU
columns filled. The tests' fixture writers (tests/image_fixtures.py, tests/text_fixtures.py) make
the data, so no network and no ../shared are needed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def say(key: str, value) -> None:
    print(f"{key}={value}", flush=True)


def probe_device() -> dict:
    import ray
    import torch

    from trainables.base import choose_device

    device = choose_device()
    return {"gpu_ids": [str(i) for i in ray.get_gpu_ids()], "device": str(device),
            "cuda_devices": torch.cuda.device_count() if device.type == "cuda" else 0,
            "name": torch.cuda.get_device_name(0) if device.type == "cuda" else None}


def check_visibility(gpu) -> None:
    import ray

    quarter = ray.get(ray.remote(num_gpus=0.25, max_calls=1)(probe_device).remote())
    none = ray.get(ray.remote(num_gpus=0, max_calls=1)(probe_device).remote())
    ok = quarter["cuda_devices"] == 1 and quarter["name"] == gpu.name and none["device"] == "cpu"
    say("visibility", f"{'ok' if ok else 'FAILED'} (0.25-GPU trial: {quarter['device']} {quarter['name']}, "
                      f"{quarter['cuda_devices']} card visible; 0-GPU trial: {none['device']}, gpu ids {none['gpu_ids']})")


def fixtures(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.image_fixtures import write_cifar_folder
    from tests.text_fixtures import write_imdb_folder, write_tiny_model

    return {"cifar": str(write_cifar_folder(work / "cifar", per_class_train=20, per_class_test=8)),
            "imdb": str(write_imdb_folder(work / "imdb")), "model": str(write_tiny_model(work / "model")),
            "cache": str(work / "cache")}


def smoke(task: str, args: list[str], work: Path, timeout: int) -> None:
    import pandas as pd

    results = work / f"results-{task}"
    started = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--task", task, "--budget", "smoke",
                              "--results-dir", str(results), "--methods", "grid:fifo,hyperopt:asha", *args],
                             capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        say(f"smoke_{task}", f"FAILED: no result within {timeout} s")
        return
    if out.returncode != 0:
        say(f"smoke_{task}", f"FAILED exit {out.returncode}: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        return
    (run_dir,) = (results / task).iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    columns = ("gpu_seconds", "mean_gpu_util", "peak_trial_gpu_mem_mb", "peak_card_gpu_mem_mb")
    filled = {c: bool(summary[c].notna().all()) for c in columns}
    say(f"smoke_{task}", f"exit 0 in {time.perf_counter() - started:.0f} s; GPU columns filled: "
                         + ", ".join(f"{c}={v}" for c, v in filled.items()))


def run_ray_checks(gpu, work: Path) -> None:
    """Visibility through Ray, then the two smoke runs (each in a process of its own)."""
    import ray

    from experiments import machine

    paths = fixtures(work)
    if gpu is None:
        say("visibility", "skipped: no GPU")
    else:
        machine.start_ray(None, gpu)
        try:
            check_visibility(gpu)
        finally:
            ray.shutdown()
    gpu_args = ["--gpus-per-trial", "0.25"] if gpu else []
    smoke("cifar10", ["--data-dir", paths["cifar"], "--cache-dir", paths["cache"], *gpu_args], work, timeout=240)
    smoke("imdb", ["--data-dir", paths["imdb"], "--model", paths["model"], "--cache-dir", paths["cache"], *gpu_args],
          work, timeout=240)
