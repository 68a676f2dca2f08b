"""The parts of benchmarks/gpu_check.py (the memory ones in gpu_memory.py). Each runs in a process of its own (gpu_check.py starts
``gpu_check.py --part NAME`` under a time budget), prints ``key=value`` lines, and may fail alone:
the check prints its error and goes on with the next part. On the CPU (``--rehearse-on-cpu``) the
same code runs with tiny sizes; its figures say they are not GPU figures."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpu_trials import (INJECT, bert_config, cifar_config, cifar_trial, bert_trial, device_of, sizes, spawn_trials,
                        synthetic_cifar, synthetic_tokens)

GPU_24GB_MIB = 24 * 1024  # the card the default --gpus-per-trial 0.25 is judged against
CPU_TAG = " (CPU rehearsal, tiny sizes: not a GPU figure)"


def say(key: str, value) -> None:
    print(f"{key}={value}", flush=True)


@dataclass
class Context:
    on_gpu: bool
    gpu: object  # experiments.gpus.Gpu of the card (device 0 in this process), None on the CPU
    counts: tuple[int, ...]  # trials packed per point
    work: Path  # a scratch folder shared by the parts
    timeout_s: float  # this part's budget: a spawn of trials gives up at it

    @property
    def tag(self) -> str:
        return "" if self.on_gpu else CPU_TAG


def random_distilbert(ctx: Context) -> str:
    """DistilBERT with random weights, saved once for every part (no download): full size on a card."""
    folder = ctx.work / "distilbert"
    if not (folder / "config.json").is_file():
        from transformers import DistilBertConfig, DistilBertForSequenceClassification
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        config = DistilBertConfig(num_labels=2, **sizes(ctx.on_gpu)["bert"])
        DistilBertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


# --- the card: name, precision, this process's CUDA context, MPS ------------------------------------
def part_card(ctx: Context) -> None:
    import torch

    from experiments.gpus import mps_running
    from trainables.base import MixedPrecision
    from trainables.memory import context_bytes

    device = device_of(True)
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    chosen = MixedPrecision(device).name
    say("precision", f"{chosen} (torch: bf16 native={native}; {'agrees' if (chosen == 'bf16') == native else 'DISAGREES'}"
                     f" with core.rules.training_precision; {torch.cuda.get_device_name(0)}, capability "
                     f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))})")
    torch.zeros(1, device=device)
    context = context_bytes(device)
    free, total = torch.cuda.mem_get_info(device)
    say("cuda_context_mib", f"{'unknown (NVML does not list this process)' if context is None else round(context / 2**20)}"
                            f" (this process, outside the allocator; the card's use now {(total - free) / 2**20:.0f} "
                            f"of {total / 2**20:.0f} MiB)")
    pids = card_pids()
    say("check_process_context", "unknown: NVML does not list this container's processes" if os.getpid() not in pids
        else "PRESENT: the check's own process holds card memory" if os.getppid() in pids
        else "none (the check's own process holds no CUDA context: the card's memory is the parts' alone)")
    say("mps", "running" if mps_running() else "not running")
    say("allocator_conf", os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "unset") + " (the parts' allocator, as a real run's workers have it)")


def card_pids() -> set[int]:
    """The processes NVML lists on the card (none where it cannot list them)."""
    import pynvml

    from experiments.gpus import visible_gpus

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(visible_gpus()[0].uuid)
        return {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except pynvml.NVMLError:
        return set()
    finally:
        pynvml.nvmlShutdown()


# --- packing: 1..n trials on the card at once ----------------------------------------------------------
def packing(ctx: Context, target, label: str, args: tuple, counts, unit: str, inject_at: str) -> dict[int, float]:
    rates = {}
    for n in counts:
        outs, util = spawn_trials(target, n, args, ctx.timeout_s, ctx.gpu,
                                  inject=inject_at in INJECT and n == counts[-1])
        rates[n] = sum(o["samples_per_s"] for o in outs)
        busy = f"; card utilization {statistics.mean(util):.0f}%" if util else ""
        memory = (f"; per-trial peak reserved {max(o['reserved_mib'] for o in outs)} MiB, context "
                  f"{max((o['context_mib'] or 0) for o in outs)} MiB") if ctx.on_gpu else ""
        say(f"{label}_{n}_{unit}_per_s", f"{rates[n]:.0f} ({n} trials over one window{busy}{memory}){ctx.tag}")
        if n == counts[-1]:
            say(f"{label}_{n}_vs_1", f"{rates[n] / rates[counts[0]]:.2f}{ctx.tag}")
            if ctx.on_gpu and "precision" in outs[0]:
                verdict_24gb(outs)
    return rates


def part_cifar_packing(ctx: Context) -> None:
    batches = sizes(ctx.on_gpu)["cifar_batches"]
    for batch in batches:  # the smallest batch at the first and last count only: the lease is short
        counts = ctx.counts if batch == batches[0] else (ctx.counts[0], ctx.counts[-1])
        packing(ctx, cifar_trial, f"packing_b{batch}", (ctx.on_gpu, batch), counts, "img",
                "cifar_packing/trial")


def part_imdb_packing(ctx: Context) -> None:
    """IMDB's DistilBERT-base (random weights, batch 32 x 256 tokens) trained by 1 and n trials at
    once: the aggregate samples/s, each one's peak memory and CUDA context, and the 24 GB verdict."""
    model = random_distilbert(ctx)
    packing(ctx, bert_trial, "imdb_packing", (ctx.on_gpu, model), (ctx.counts[0], ctx.counts[-1]), "samples",
            "imdb_packing/trial")


def verdict_24gb(outs: list[dict]) -> None:
    """Whether the default --gpus-per-trial 0.25 holds a DistilBERT trial on a 24 GB card: its allocator's
    peak reservation plus its CUDA context as measured here (DEFAULT_CONTEXT_MB where NVML could not say)."""
    from trainables.memory import DEFAULT_CONTEXT_MB

    reserved = max(o["reserved_mib"] for o in outs)
    contexts = [o["context_mib"] for o in outs if o["context_mib"] is not None]
    context, how = (max(contexts), "measured") if contexts else (DEFAULT_CONTEXT_MB, "declared: NVML could not say")
    need, quarter = reserved + context, GPU_24GB_MIB / 4
    say("distilbert_trials_mib", json.dumps({"allocated": [o["allocated_mib"] for o in outs],
                                             "reserved": [o["reserved_mib"] for o in outs],
                                             "context": [o["context_mib"] for o in outs],
                                             "precision": outs[0]["precision"]}))
    say("distilbert_quarter_of_24gb", f"{'fits' if need <= quarter else 'does NOT fit'}: a trial needs ~{need} MiB "
                                      f"(reserved {reserved} + context {context}, {how}), a quarter of 24 GB is "
                                      f"{quarter:.0f} MiB")


# --- MPS: packing with NVIDIA's Multi-Process Service, where it starts without root ------------------
def mps_environment(work: Path) -> dict[str, str]:
    """Where the ``mps`` part's own MPS daemon and its clients meet (gpu_check.py stops it there too)."""
    return {"CUDA_MPS_PIPE_DIRECTORY": str(work / "mps-pipe"), "CUDA_MPS_LOG_DIRECTORY": str(work / "mps-log")}


def part_mps(ctx: Context) -> None:
    from experiments.gpus import mps_running

    if mps_running():
        say("mps_packing", "skipped: MPS was already running, so the packing figures above are with it")
        return
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        say("mps_packing", "skipped: nvidia-cuda-mps-control is not installed")
        return
    env = mps_environment(ctx.work)
    for folder in env.values():
        Path(folder).mkdir(exist_ok=True)
    started = subprocess.run([control, "-d"], env={**os.environ, **env}, capture_output=True, text=True, timeout=10)
    if started.returncode != 0:
        say("mps_packing", f"skipped: the MPS daemon did not start without root ({started.stderr.strip()[:160]})")
        return
    os.environ.update(env)  # the spawned trials inherit it: they are MPS clients
    try:
        batch = sizes(True)["cifar_batches"][-1]
        packing(ctx, cifar_trial, f"mps_packing_b{batch}", (True, batch), (ctx.counts[0], ctx.counts[-1]),
                "img", "mps/trial")
    finally:
        subprocess.run([control], input="quit\n", env={**os.environ, **env}, capture_output=True, text=True, timeout=10)


# --- ours against a plain loop, on the card ------------------------------------------------------------
def part_cifar_ratio(ctx: Context) -> None:
    """Our CIFAR-10 epoch against benchmarks/cifar10_throughput.py's plain loop on the same device and
    precision, paired rounds in ABBA order (the median of the rounds' ratios)."""
    from _common import epoch_throughput, paired_rounds
    from cifar10_throughput import plain_loop
    from trainables.cifar10 import Cifar10Run

    size, device = sizes(ctx.on_gpu), device_of(ctx.on_gpu)
    batch = size["cifar_batches"][0]
    data = synthetic_cifar(size["images"])
    images, labels = data["train"]
    plain = lambda: plain_loop(images, labels, batch, 1e-3, 0.2, 0, device)  # noqa: E731
    plain()  # warm-up (cudnn autotuning, the allocator)
    ours, theirs = paired_rounds(lambda: epoch_throughput(Cifar10Run, cifar_config(batch), data, device), plain,
                                 4 if ctx.on_gpu else 2)
    ratios = [o / p for o, p in zip(ours, theirs)]
    say("cifar10_ours_vs_plain", f"{statistics.median(ratios):.3f} (rounds: {' '.join(f'{r:.3f}' for r in ratios)}; "
                                 f"{size['images']} images, batch {batch}){ctx.tag}")


def part_imdb_ratio(ctx: Context) -> None:
    """Our IMDB epoch (ImdbRun.train_epoch) against benchmarks/imdb_throughput.py's plain loop on the
    random-weight DistilBERT, same batches' shapes, same device and precision, ABBA rounds."""
    import numpy as np

    from _common import epoch_throughput, paired_rounds
    from imdb_throughput import plain_loop
    from trainables.imdb import ImdbRun

    size, device = sizes(ctx.on_gpu), device_of(ctx.on_gpu)
    config = bert_config(ctx.on_gpu, random_distilbert(ctx))
    data = synthetic_tokens(size["bert_examples"], size["tokens"], size["bert"].get("vocab_size", 30522))
    order = np.random.default_rng(0).permutation(size["bert_examples"])
    plain = lambda: plain_loop(config, data, order, device)  # noqa: E731
    plain()  # warm-up
    ours, theirs = paired_rounds(lambda: epoch_throughput(ImdbRun, config, data, device), plain, 4 if ctx.on_gpu else 2)
    ratios = [o / p for o, p in zip(ours, theirs)]
    say("imdb_ours_vs_plain", f"{statistics.median(ratios):.3f} (rounds: {' '.join(f'{r:.3f}' for r in ratios)}; "
                              f"{size['bert_examples']} reviews, batch {config['batch_size']} x {size['tokens']} tokens)"
                              f"{ctx.tag}")


# --- a checkpoint saved and restored on the card through the real trainable -----------------------------
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


def part_checkpoint(ctx: Context) -> None:
    from trainables.cifar10 import Cifar10Trainable

    data = synthetic_cifar(sizes(ctx.on_gpu)["images"])
    config = {**cifar_config(64), "num_epochs": 3}
    device = device_of(ctx.on_gpu)
    first = bare_trainable(Cifar10Trainable, config, data, device)
    result = first.step()
    folder = ctx.work / "checkpoint"
    folder.mkdir(exist_ok=True)
    first.save_checkpoint(str(folder))
    second = bare_trainable(Cifar10Trainable, config, data, device)
    second.load_checkpoint(str(folder))
    restored = {"device": str(second._run.device), "epoch": second._epoch == result["epoch"],
                "best_on_cpu": all(t.device.type == "cpu" for t in second._best_model.values())}
    second.step()  # goes on training after the restore
    say("checkpoint_round_trip", json.dumps(restored) + ("" if ctx.on_gpu else " (CPU rehearsal)"))
    if ctx.on_gpu:  # two trials in one reused worker: the second reports its own peak
        big = first.reset_config({**config, "batch_size": 512}) and first.step()["peak_trial_gpu_mem_mb"]
        small = first.reset_config({**config, "batch_size": 32}) and first.step()["peak_trial_gpu_mem_mb"]
        say("peak_trial_gpu_mem_reset", json.dumps({"first_mb": round(big), "second_mb": round(small),
                                                    "reset": small < big}))
    first.cleanup()
    second.cleanup()
