"""One prepared check of the GPU path on a machine with one CUDA GPU: ``python benchmarks/gpu_check.py``.

Prints one ``key=value`` line per check, and ``<check>=no GPU (...)`` for what needs a card
where there is none, so the same command runs its CPU-reachable parts anywhere:

- visibility: a 0.25-GPU trial sees the pinned card (and only it); a 0-GPU trial sees none;
- packing: aggregate CIFAR-10 images/s with 1, 2 and 4 ResNet-18 trials sharing the card
  (--gpus-per-trial 1, 0.5, 0.25) and the ratio of 4-packed to 1, with the monitor's mean GPU
  utilization, each trial's own peak memory, and the card's memory left after they end;
- a checkpoint saved and restored on the card; each trial's own peak memory in a reused worker
  (reset between trials); IMDB weights in fp32 under bf16 autocast;
  the monitor's cost per NVML sample;
- a CIFAR-10 and an IMDB smoke run through run_all.py (exit 0, GPU columns filled).

Data: synthetic images for throughput; the tests' own fixture code (tests/image_fixtures.py,
tests/text_fixtures.py) for the smoke runs, so no network and no ../shared are needed. On an
offline GPU machine, install Ray, hyperopt and bayesian-optimization from copied wheels first.
Budget: at most 8 minutes on one H200-class GPU (``--seconds`` per packing point).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def say(key: str, value) -> None:
    print(f"{key}={value}", flush=True)


# --- work that runs inside Ray workers (module-level, so workers import it by name) ---------
def probe_device() -> dict:
    import ray
    import torch

    from trainables.base import choose_device

    device = choose_device()
    return {"gpu_ids": [str(i) for i in ray.get_gpu_ids()], "device": str(device),
            "cuda_devices": torch.cuda.device_count() if device.type == "cuda" else 0,
            "name": torch.cuda.get_device_name(0) if device.type == "cuda" else None}


def synthetic_cifar(n: int, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {split: (rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size))
            for split, size in (("train", n), ("val", 512), ("test", 512))}


def cifar_throughput(seconds: float, n_images: int, batch_size: int) -> dict:
    """ResNet-18 training on synthetic images for about ``seconds``: images/s of this trial and
    its own peak memory (the trainable's real TrainingRun, on the device Ray gave it)."""
    import torch

    from trainables.base import choose_device
    from trainables.cifar10 import Cifar10Run

    device = choose_device()
    config = {"learning_rate": 1e-3, "batch_size": batch_size, "dropout_rate": 0.2, "seed": 0, "model": "resnet18"}
    run = Cifar10Run(config, synthetic_cifar(n_images), device)
    run.train_epoch()  # warm-up: cudnn autotuning, allocator
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run.train_epoch()
        images += run.n_train
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    run.release()
    return {"images": images, "seconds": elapsed, "peak_trial_gpu_mem_mb": peak}


def checkpoint_round_trip(folder: str) -> dict:
    """Train a CIFAR-10 trainable one epoch on the card, checkpoint it, restore it in a new
    trainable on the card: the path every retry and --resume takes."""
    import torch

    from trainables.cifar10 import Cifar10Trainable

    data = synthetic_cifar(256)
    config = {"learning_rate": 1e-3, "batch_size": 64, "dropout_rate": 0.2, "num_epochs": 2, "seed": 0,
              "model": "resnet18"}
    Cifar10Trainable.load_data = staticmethod(lambda config: data)  # synthetic data, this worker only
    first = Cifar10Trainable(config=config)
    result = first.train()
    first.save_checkpoint(folder)
    cuda_rng = torch.cuda.get_rng_state()
    torch.cuda.manual_seed(123)  # move it on
    second = Cifar10Trainable(config=config)
    second.load_checkpoint(folder)
    restored = {"device": str(second._device), "epoch": second._epoch == result["epoch"],
                "best_on_cpu": all(t.device.type == "cpu" for t in second._best_model.values()),
                "cuda_rng_restored": bool(torch.equal(torch.cuda.get_rng_state(), cuda_rng))}
    second.train()  # goes on training on the card after the restore
    first.stop()
    second.stop()
    return restored


def peak_per_trial() -> dict:
    """Two CIFAR-10 trials in one reused worker (Tune's reset_config), a large batch then a
    small one: the second must report its own peak, not the worker's."""
    from trainables.cifar10 import Cifar10Trainable

    data = synthetic_cifar(512)
    Cifar10Trainable.load_data = staticmethod(lambda config: data)  # synthetic data, this worker only
    config = {"learning_rate": 1e-3, "batch_size": 512, "dropout_rate": 0.2, "num_epochs": 1, "seed": 0,
              "model": "resnet18"}
    trainable = Cifar10Trainable(config=config)
    first = trainable.train()["peak_trial_gpu_mem_mb"]
    trainable.reset_config({**config, "batch_size": 32})
    second = trainable.train()["peak_trial_gpu_mem_mb"]
    trainable.stop()
    return {"first_mb": round(first), "second_mb": round(second), "reset": second < first}


def imdb_precision(model_dir: str, data_dir: str, cache_dir: str) -> dict:
    import numpy as np

    from trainables import imdb
    from trainables.base import choose_device

    config = {"data_dir": data_dir, "model": model_dir, "cache_dir": cache_dir, "subset": None, "learning_rate": 5e-5,
              "batch_size": 8, "num_train_epochs": 1, "max_seq_length": 32, "seed": 0}
    run = imdb.ImdbRun(config, imdb.load_data(config), choose_device())
    dtypes = {str(p.dtype) for p in run.model.parameters()}
    ids, mask = imdb.pad_batch(*run.data["val"][:2], rows=np.arange(4), pad_token_id=0)
    with run.autocast:
        logits = run.model(input_ids=ids.to(run.device), attention_mask=mask.to(run.device)).logits
    run.train_epoch()
    out = {"param_dtypes": sorted(dtypes), "autocast_logits": str(logits.dtype), "device": str(run.device)}
    run.release()
    return out


# --- the checks ---------------------------------------------------------------------------------
def card_used_mb(gpu) -> float:
    from experiments.gpus import GpuSampler

    sampler = GpuSampler(gpu)
    try:
        return sampler.sample()[1]
    finally:
        sampler.close()


def check_visibility(gpu) -> None:
    import ray

    quarter = ray.get(ray.remote(num_gpus=0.25, max_calls=1)(probe_device).remote())
    none = ray.get(ray.remote(num_gpus=0, max_calls=1)(probe_device).remote())
    ok = quarter["cuda_devices"] == 1 and quarter["name"] == gpu.name and none["device"] == "cpu"
    say("visibility", f"{'ok' if ok else 'FAILED'} (0.25-GPU trial: {quarter['device']} {quarter['name']}, "
                      f"{quarter['cuda_devices']} card visible; 0-GPU trial: {none['device']}, gpu ids {none['gpu_ids']})")


def check_packing(gpu, seconds: float) -> None:
    import ray

    from experiments.monitor import ResourceMonitor

    baseline = card_used_mb(gpu)
    rates = {}
    for n in (1, 2, 4):
        task = ray.remote(num_cpus=1, num_gpus=1 / n, max_calls=1)(cifar_throughput)
        monitor = ResourceMonitor("gpu_check", 0.2, gpu=gpu)
        with monitor:
            outs = ray.get([task.remote(seconds, 4096, 128) for _ in range(n)])
        util = [r["gpu_util"] for r in monitor.rows() if r["gpu_util"] is not None]
        rates[n] = sum(o["images"] / o["seconds"] for o in outs)
        say(f"packing_{n}_img_per_s", f"{rates[n]:.0f} (gpus_per_trial={1 / n:g}; mean GPU util "
                                      f"{sum(util) / max(len(util), 1):.0f}%; per-trial peak "
                                      f"{max(o['peak_trial_gpu_mem_mb'] for o in outs):.0f} MiB)")
    say("packing_4_vs_1", f"{rates[4] / rates[1]:.2f}")
    time.sleep(1.0)  # the scoring-style workers (max_calls=1) exit; their contexts go with them
    say("card_mem_left_after_trials_mb", f"{card_used_mb(gpu) - baseline:.0f} (baseline {baseline:.0f} MiB)")


def check_monitor_cost(gpu) -> None:
    from experiments.gpus import GpuSampler

    if gpu is None:
        say("monitor_gpu_sample_ms", "no GPU (NVML lists none)")
        return
    sampler = GpuSampler(gpu)
    started = time.perf_counter()
    for _ in range(200):
        sampler.sample()
    sampler.close()
    say("monitor_gpu_sample_ms", f"{(time.perf_counter() - started) / 200 * 1000:.3f}")


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
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--task", task, "--budget", "smoke",
                          "--results-dir", str(results), "--methods", "grid:fifo,hyperopt:asha", *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        say(f"smoke_{task}", f"FAILED exit {out.returncode}: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        return
    (run_dir,) = (results / task).iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    columns = ("gpu_seconds", "mean_gpu_util", "peak_trial_gpu_mem_mb", "peak_card_gpu_mem_mb")
    filled = {c: bool(summary[c].notna().all()) for c in columns}
    say(f"smoke_{task}", f"exit 0 in {time.perf_counter() - started:.0f} s; GPU columns filled: "
                         + ", ".join(f"{c}={v}" for c, v in filled.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-id", type=int, default=0, help="the visible GPU to check (default 0)")
    parser.add_argument("--seconds", type=float, default=15.0, help="training seconds per packing point")
    args = parser.parse_args(argv)
    import ray
    import torch

    from experiments import machine
    from experiments.gpus import visible_gpus

    gpus = visible_gpus()
    gpu = gpus[args.gpu_id] if args.gpu_id < len(gpus) else None
    say("device", f"{gpu.name} ({gpu.memory_total_mb:.0f} MiB), torch {torch.__version__} CUDA "
                  f"{torch.version.cuda}, cuda_available={torch.cuda.is_available()}" if gpu else
        f"no GPU (NVML lists {len(gpus)} visible); torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    paths = fixtures(work)
    machine.start_ray(None, gpu)
    try:
        if gpu is None:
            for key in ("visibility", "packing", "card_mem_left_after_trials_mb", "checkpoint_restore_on_gpu",
                        "peak_trial_gpu_mem_reset"):
                say(key, "no GPU (NVML lists none): not measured")
        else:
            check_visibility(gpu)
            check_packing(gpu, args.seconds)
            folder = work / "checkpoint"
            folder.mkdir()
            restored = ray.get(ray.remote(num_gpus=0.25, max_calls=1)(checkpoint_round_trip).remote(str(folder)))
            say("checkpoint_restore_on_gpu", json.dumps(restored))
            peaks = ray.get(ray.remote(num_gpus=0.25, max_calls=1)(peak_per_trial).remote())
            say("peak_trial_gpu_mem_reset", json.dumps(peaks))
        precision = ray.get(ray.remote(num_gpus=0.25 if gpu else 0, max_calls=1)(imdb_precision).remote(
            paths["model"], paths["imdb"], paths["cache"]))
        say("imdb_weights", json.dumps(precision))
        check_monitor_cost(gpu)
    finally:
        ray.shutdown()
    gpu_args = ["--gpus-per-trial", "0.25"] if gpu else []
    smoke("cifar10", ["--data-dir", paths["cifar"], "--cache-dir", paths["cache"], *gpu_args], work, timeout=240)
    smoke("imdb", ["--data-dir", paths["imdb"], "--model", paths["model"], "--cache-dir", paths["cache"], *gpu_args],
          work, timeout=240)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    sys.exit(main())
