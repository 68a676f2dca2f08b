"""One prepared check of the GPU path on a machine with one CUDA GPU: ``python benchmarks/gpu_check.py``.

Runs on a bare GPU image (torch, torchvision, transformers, pandas, scikit-learn, nvidia-ml-py; no
Ray, hyperopt, bayes_opt or datasets, no network) in about 3 minutes on a datacenter GPU, and
prints one ``key=value`` line per check, ``key=skipped: <why>`` for what it cannot do there:

- the trainables import without Ray; data is built in memory (synthetic images, synthetic token
  ids), DistilBERT full size from ``DistilBertConfig()`` with random weights (no download);
- packing: 1, 2 and 4 spawned processes ("trials") train the real CIFAR-10 ResNet-18 TrainingRun
  on the card, all timed over the same window after a barrier; aggregate images/s, the ratio of
  4 to 1, the card's utilization over the window (NVML), each process's peak memory;
- memory: 1 and 4 processes train the real IMDB TrainingRun (full-size DistilBERT, batch 32 x 256
  tokens); each one's ``max_memory_allocated`` and ``max_memory_reserved``, the card's use at the
  peak, and whether the default ``--gpus-per-trial 0.25`` fits a 24 GB card;
- our CIFAR-10 epoch against benchmarks/cifar10_throughput.py's plain loop on the card (ABBA rounds);
- ``--gpus-per-trial auto``'s memory probe for each CIFAR-10 batch size, alone in a fresh process:
  the MiB it measures, the share it would ask for and how many such trials fit, against 0.25's four;
- a checkpoint saved and restored on the card through the real trainable, driven without Tune;
  each trial's own peak in a reused worker (reset between trials); the precision the card gives
  (bf16 native or not);
- with Ray installed (a user's machine), also Ray's GPU assignment and a CIFAR-10 and an IMDB smoke
  run through run_all.py (benchmarks/gpu_check_ray.py).

``--rehearse-on-cpu`` runs the same code on the CPU with tiny sizes (tests/test_gpu_check.py does,
with Ray, hyperopt, bayes_opt and datasets made unimportable), so the script cannot rot between GPU
machines; its figures are not GPU figures and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The bare image, simulated: GPU_CHECK_WITHOUT=ray,hyperopt makes those imports fail here and in
# the spawned processes (which import this file again), as on a machine without them.
for _name in filter(None, os.environ.get("GPU_CHECK_WITHOUT", "").split(",")):
    sys.modules[_name] = None

import _common  # noqa: E402,F401  (puts the repository on sys.path)

GPU_24GB_MIB = 24 * 1024  # the card the default --gpus-per-trial 0.25 is judged against
CUDA_CONTEXT_MIB = 500  # what a CUDA context takes beyond the allocator's reserve (declared, not measured here)


def say(key: str, value) -> None:
    print(f"{key}={value}", flush=True)


# --- sizes: the real ones on a card, tiny ones for the CPU rehearsal ---------------------------------
def sizes(on_gpu: bool) -> dict:
    if on_gpu:
        return {"images": 4096, "cifar_batch": 128, "window_s": 10.0, "bert": {}, "bert_batch": 32, "tokens": 256,
                "bert_examples": 96}
    return {"images": 64, "cifar_batch": 32, "window_s": 1.5, "bert_batch": 4, "tokens": 16, "bert_examples": 8,
            "bert": {"n_layers": 1, "n_heads": 2, "dim": 32, "hidden_dim": 64, "vocab_size": 200,
                     "max_position_embeddings": 64}}


def synthetic_cifar(n: int, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {split: (rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size))
            for split, size in (("train", n), ("val", min(n, 512)), ("test", min(n, 512)))}


def synthetic_tokens(n: int, tokens: int, vocab: int, seed: int = 0) -> dict:
    """The IMDB task's tokenized layout (ids, offsets, labels per split), every review ``tokens`` long."""
    import numpy as np

    rng = np.random.default_rng(seed)
    split = lambda: (rng.integers(1, vocab, n * tokens), np.arange(0, n * tokens + 1, tokens),  # noqa: E731
                     rng.integers(0, 2, n))
    return {"train": split(), "val": split(), "test": split(), "pad_token_id": 0}


def device_of(on_gpu: bool):
    import torch

    return torch.device("cuda", 0) if on_gpu else torch.device("cpu")


def peaks(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20),
            "reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20)}


# --- what each spawned process ("trial") does --------------------------------------------------------
def cifar_trial(on_gpu: bool, barrier, results, window_s: float) -> None:
    """The real CIFAR-10 TrainingRun: warm up, wait for every trial, then train for the same window."""
    import torch

    from trainables.cifar10 import Cifar10Run

    size, device = sizes(on_gpu), device_of(on_gpu)
    config = {"learning_rate": 1e-3, "batch_size": size["cifar_batch"], "dropout_rate": 0.2, "seed": 0,
              "model": "resnet18"}
    run = Cifar10Run(config, synthetic_cifar(size["images"]), device)
    run.train_epoch()  # warm-up: cudnn autotuning, the allocator
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    barrier.wait()  # every trial starts its window together: the packing ratio is not flattered
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < window_s:
        run.train_epoch()
        images += run.n_train
    if on_gpu:
        torch.cuda.synchronize()
    results.put({"images": images, "seconds": time.perf_counter() - started, **peaks(device)})
    run.release()


def bert_trial(on_gpu: bool, barrier, results, model_dir: str) -> None:
    """The real IMDB TrainingRun on a random-weight DistilBERT: a few steps at batch x tokens."""
    import torch

    from trainables.imdb import ImdbRun

    size, device = sizes(on_gpu), device_of(on_gpu)
    config = {"model": model_dir, "learning_rate": 5e-5, "batch_size": size["bert_batch"], "num_train_epochs": 1,
              "max_seq_length": size["tokens"], "padding": "max_length", "seed": 0}
    vocab = size["bert"].get("vocab_size", 30522)
    run = ImdbRun(config, synthetic_tokens(size["bert_examples"], size["tokens"], vocab), device)
    barrier.wait()  # all trials hold their models at once, as packed trials do
    started = time.perf_counter()
    run.train_epoch()
    if on_gpu:
        torch.cuda.synchronize()
    results.put({"seconds": time.perf_counter() - started, "autocast": str(run.autocast.fast_dtype)
                 if run.autocast._enabled else "off", **peaks(device)})
    run.release()


def spawn_trials(target, n: int, args: tuple, gpu=None, window_s: float = 0.0) -> tuple[list[dict], list[float]]:
    """``n`` spawned processes running ``target``; their results, and the card's utilization (%)
    sampled through NVML over the common window (none without a GPU)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    barrier, results = context.Barrier(n + 1), context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, results, *extra))
                 for extra in [()] * n]
    for p in processes:
        p.start()
    barrier.wait(timeout=600)
    util = sample_util(gpu, window_s) if gpu is not None and window_s else []
    out = [results.get(timeout=600) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    return out, util


def sample_util(gpu, seconds: float) -> list[float]:
    from experiments.gpus import GpuSampler

    sampler, values, end = GpuSampler(gpu), [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            util = sampler.sample()[0]
            if util is not None:
                values.append(util)
            time.sleep(0.2)
    finally:
        sampler.close()
    return values


# --- the checks ----------------------------------------------------------------------------------------
def check_packing(on_gpu: bool, gpu, counts=(1, 2, 4)) -> None:
    window = sizes(on_gpu)["window_s"]
    tag = "" if on_gpu else " (CPU rehearsal, tiny sizes: not a GPU figure)"
    rates = {}
    for n in counts:
        outs, util = spawn_trials(_cifar_entry, n, (on_gpu, window), gpu, window)
        rates[n] = sum(o["images"] / o["seconds"] for o in outs)
        memory = f"; per-trial peak reserved {max(o['reserved_mib'] for o in outs)} MiB" if on_gpu else ""
        busy = f"; card utilization {sum(util) / len(util):.0f}%" if util else ""
        say(f"packing_{n}_img_per_s", f"{rates[n]:.0f} ({n} trials over one {window:g} s window{busy}{memory}){tag}")
    say(f"packing_{counts[-1]}_vs_1", f"{rates[counts[-1]] / rates[1]:.2f}{tag}")


def _cifar_entry(on_gpu, window_s, barrier, results):
    cifar_trial(on_gpu, barrier, results, window_s)


def _bert_entry(on_gpu, model_dir, barrier, results):
    bert_trial(on_gpu, barrier, results, model_dir)


def check_cifar_ratio(on_gpu: bool, rounds: int = 4) -> None:
    """Our CIFAR-10 epoch against benchmarks/cifar10_throughput.py's plain loop on the same device and
    precision, paired rounds in ABBA order (the median of the rounds' ratios): the on-device
    augmentation must not cost the card what it does not cost the CPU."""
    import statistics

    from _common import epoch_throughput, paired_rounds
    from cifar10_throughput import plain_loop
    from trainables.cifar10 import Cifar10Run

    size, device = sizes(on_gpu), device_of(on_gpu)
    data = synthetic_cifar(size["images"])
    images, labels = data["train"]
    config = {"learning_rate": 1e-3, "batch_size": size["cifar_batch"], "dropout_rate": 0.2, "seed": 0,
              "model": "resnet18"}
    plain = lambda: plain_loop(images, labels, size["cifar_batch"], 1e-3, 0.2, 0, device)  # noqa: E731
    plain()  # warm-up (cudnn autotuning, the allocator)
    ours_runs, plain_runs = paired_rounds(lambda: epoch_throughput(Cifar10Run, config, data, device), plain,
                                          rounds if on_gpu else 2)
    ratios = [o / p for o, p in zip(ours_runs, plain_runs)]
    tag = "" if on_gpu else " (CPU rehearsal, tiny sizes: not a GPU figure)"
    say("cifar10_ours_vs_plain", f"{statistics.median(ratios):.3f} (rounds: {' '.join(f'{r:.3f}' for r in ratios)}; "
                                 f"{size['images']} images, batch {size['cifar_batch']}){tag}")


def check_memory_probe(on_gpu: bool) -> None:
    """--gpus-per-trial auto's probe (experiments.packing) on the card: each CIFAR-10 batch size of the
    space measured alone in a fresh process (its own CUDA context), the share it would ask for, and
    how many such trials fit at once against the fixed 0.25's four."""
    if not on_gpu:
        say("memory_probe", "skipped: no GPU (the probe measures CUDA memory; tests/test_packing.py injects "
                            "its results on the CPU)")
        return
    import multiprocessing

    from experiments.packing import share_for
    from trainables.cifar10 import TASK

    context = multiprocessing.get_context("spawn")
    lines, fits = [], {}
    for batch in TASK.space["batch_size"]:
        with context.Pool(1, maxtasksperchild=1) as pool:
            numbers = pool.apply(_probe_cifar, (batch,))
        share = share_for(numbers["need_mb"], numbers["card_mb"])
        fits[batch] = int(1 // share)
        lines.append(f"batch {batch}: {numbers['need_mb']:.0f} MiB (context {numbers['context_mb']:.0f}) -> share {share:g}")
    say("memory_probe_cifar10", "; ".join(lines))
    say("memory_probe_packing", "trials at once, auto: " + ", ".join(f"batch {b}: {n}" for b, n in fits.items())
        + "; fixed --gpus-per-trial 0.25: 4 of any batch")


def _probe_cifar(batch: int) -> dict:
    import torch

    from trainables.cifar10 import Cifar10Trainable
    from trainables.memory import probe_need_mb

    config = {"learning_rate": 1e-3, "batch_size": batch, "dropout_rate": 0.2, "seed": 0, "model": "resnet18",
              "num_epochs": 1}
    return probe_need_mb(Cifar10Trainable, config, torch.device("cuda"), synthetic_cifar(3 * batch))


def check_bert_memory(on_gpu: bool, gpu, work: Path, counts=(1, 4)) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    config = DistilBertConfig(num_labels=2, **sizes(on_gpu)["bert"])  # full size on a card: DistilBERT-base
    DistilBertForSequenceClassification(config).save_pretrained(work / "distilbert")  # random weights, no download
    size = sizes(on_gpu)
    shape = f"batch {size['bert_batch']} x {size['tokens']} tokens"
    for n in counts:
        outs, _ = spawn_trials(_bert_entry, n, (on_gpu, str(work / "distilbert")))
        if not on_gpu:
            say(f"distilbert_{n}_trials", f"trained ({shape}, {outs[0]['seconds']:.1f} s, autocast "
                                          f"{outs[0]['autocast']}) (CPU rehearsal, tiny model: no memory figures)")
            continue
        reserved = max(o["reserved_mib"] for o in outs)
        say(f"distilbert_{n}_trials_mib", json.dumps({"allocated": [o["allocated_mib"] for o in outs],
                                                      "reserved": [o["reserved_mib"] for o in outs],
                                                      "autocast": outs[0]["autocast"], "shape": shape}))
        if n == counts[-1]:
            need = reserved + CUDA_CONTEXT_MIB
            quarter = GPU_24GB_MIB / 4
            say("distilbert_quarter_of_24gb", f"{'fits' if need <= quarter else 'does NOT fit'}: a trial needs "
                                              f"~{need} MiB (reserved + {CUDA_CONTEXT_MIB} MiB context), a quarter "
                                              f"of 24 GB is {quarter:.0f} MiB")


def bare_trainable(cls, config: dict, data, device):
    """The task's EpochTrainable driven by hand, as Tune would (setup, step, checkpoint, reset), on
    ``device`` (no Ray to assign one), with ``data`` in memory."""
    cls = type(cls.__name__, (cls,), {"load_data": staticmethod(lambda config: data)})
    trainable = cls.__new__(cls)
    trainable.config = config
    trainable.setup(config)
    if trainable._device != device:
        trainable._run.release()
        trainable._device = device
        trainable._start(config)
    return trainable


def check_checkpoint(on_gpu: bool, work: Path) -> None:
    from trainables.cifar10 import Cifar10Trainable

    tag = "" if on_gpu else " (CPU rehearsal)"
    data = synthetic_cifar(sizes(on_gpu)["images"])
    config = {"learning_rate": 1e-3, "batch_size": 64, "dropout_rate": 0.2, "num_epochs": 3, "seed": 0,
              "model": "resnet18"}
    device = device_of(on_gpu)
    first = bare_trainable(Cifar10Trainable, config, data, device)
    result = first.step()
    folder = work / "checkpoint"
    folder.mkdir()
    first.save_checkpoint(str(folder))
    second = bare_trainable(Cifar10Trainable, config, data, device)
    second.load_checkpoint(str(folder))
    restored = {"device": str(second._run.device), "epoch": second._epoch == result["epoch"],
                "best_on_cpu": all(t.device.type == "cpu" for t in second._best_model.values())}
    second.step()  # goes on training after the restore
    say("checkpoint_round_trip", json.dumps(restored) + tag)
    if on_gpu:  # two trials in one reused worker: the second reports its own peak
        big = first.reset_config({**config, "batch_size": 512}) and first.step()["peak_trial_gpu_mem_mb"]
        small = first.reset_config({**config, "batch_size": 32}) and first.step()["peak_trial_gpu_mem_mb"]
        say("peak_trial_gpu_mem_reset", json.dumps({"first_mb": round(big), "second_mb": round(small),
                                                    "reset": small < big}))
    else:
        say("peak_trial_gpu_mem_reset", "skipped: no GPU")
    first.cleanup()
    second.cleanup()


def check_precision(on_gpu: bool) -> None:
    import torch

    if not on_gpu:
        say("precision", "skipped: no GPU")
        return
    from trainables.base import MixedPrecision

    native = torch.cuda.is_bf16_supported(including_emulation=False)
    chosen = MixedPrecision(torch.device("cuda", 0)).name
    agree = (chosen == "bf16") == native
    say("precision", f"{chosen} (torch: bf16 native={native}; {'agrees' if agree else 'DISAGREES'} with "
                     f"core.rules.training_precision; {torch.cuda.get_device_name(0)}, capability "
                     f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))})")


GPU_ONLY = ("packing_1_img_per_s", "packing_2_img_per_s", "packing_4_img_per_s", "packing_4_vs_1",
            "distilbert_1_trials_mib", "distilbert_4_trials_mib", "distilbert_quarter_of_24gb", "memory_probe", "cifar10_ours_vs_plain",
            "checkpoint_round_trip", "peak_trial_gpu_mem_reset", "precision")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-id", type=int, default=0, help="the visible GPU to check (default 0)")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="without a GPU, run the same code on the CPU with tiny sizes (the tests do)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray parts even where Ray is installed")
    parser.add_argument("--trials", default="1,2,4", help="processes packed on the card per point (default 1,2,4; "
                                                          "the memory check uses the first and the last)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import torch

    import trainables.breast_cancer  # noqa: F401  (every task imports without Ray)
    import trainables.cifar10  # noqa: F401
    import trainables.imdb  # noqa: F401
    from experiments.gpus import GpuProbeError, visible_gpus

    try:
        import ray  # noqa: F401
        has_ray = True
    except ImportError:
        has_ray = False
    say("trainables_import", f"ok (Ray {'installed' if has_ray else 'absent'})")
    try:
        gpus = visible_gpus()
    except GpuProbeError as exc:
        gpus = []
        say("nvml", f"error: {exc}")
    gpu = gpus[args.gpu_id] if args.gpu_id < len(gpus) else None
    on_gpu = torch.cuda.is_available() and gpu is not None
    say("device", f"{gpu.name} ({gpu.memory_total_mb:.0f} MiB), torch {torch.__version__} CUDA {torch.version.cuda}"
        if on_gpu else f"no GPU (NVML lists {len(gpus)}, torch.cuda.is_available()={torch.cuda.is_available()}); "
                       f"torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    counts = tuple(int(n) for n in args.trials.split(","))
    if on_gpu or args.rehearse_on_cpu:
        check_packing(on_gpu, gpu, counts)
        check_cifar_ratio(on_gpu)
        check_bert_memory(on_gpu, gpu, work, (counts[0], counts[-1]))
        check_memory_probe(on_gpu)
        check_checkpoint(on_gpu, work)
        check_precision(on_gpu)
    else:
        for key in GPU_ONLY:
            say(key, "skipped: no GPU")
    if args.no_ray or not has_ray:
        say("ray_checks", "skipped: " + ("--no-ray" if args.no_ray else "Ray is not installed (the bare GPU image); "
                                         "CI covers Ray's placement with a declared GPU (tests/test_gpu_ray.py)"))
    else:
        from gpu_check_ray import run_ray_checks

        run_ray_checks(gpu, work)
    say("gpu_check_seconds", f"{time.perf_counter() - started:.0f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    sys.exit(main())
