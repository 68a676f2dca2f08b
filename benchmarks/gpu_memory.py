"""The memory parts of benchmarks/gpu_check.py: ``--gpus-per-trial auto``'s probe, a real out-of-memory
error at a small share, and the fp16 path of older cards, forced on. Each needs CUDA (none is
rehearsed on the CPU)."""

from __future__ import annotations

import time

from gpu_parts import Context, random_distilbert, say
from gpu_trials import bert_config, cifar_config, device_of, sizes, synthetic_cifar, synthetic_tokens


# --- --gpus-per-trial auto's memory probe, each class alone in a fresh process ---------------------------
def part_memory_probe(ctx: Context) -> None:
    """CIFAR-10's batch sizes and IMDB's smallest and largest memory class, each probed in a fresh
    process (its own CUDA context; this part's process holds none, so the card is the probe's alone):
    the MiB measured, the share asked for, how many such trials fit against 0.25's four."""
    import multiprocessing

    import torch

    from experiments.packing import share_for, trials_at_once
    from trainables import cifar10, imdb

    assert not torch.cuda.is_initialized()  # the probe counts the card's use before it as its own context
    model = random_distilbert(ctx)
    classes = [("cifar10", {"batch_size": b}) for b in cifar10.TASK.space["batch_size"]]
    batches, lengths = imdb.TASK.space["batch_size"], imdb.TASK.space["max_seq_length"]
    classes += [("imdb", {"batch_size": pick(batches), "max_seq_length": pick(lengths)}) for pick in (min, max)]
    context = multiprocessing.get_context("forkserver")  # a fresh process each, forked before any CUDA
    context.set_forkserver_preload(["__main__", "gpu_memory", "trainables.cifar10", "trainables.imdb"])
    for task, memory_class in classes:
        with context.Pool(1, maxtasksperchild=1) as pool:
            numbers = pool.apply_async(probe_one, (task, memory_class, model)).get(timeout=ctx.timeout_s)
        share = share_for(numbers["need_mb"], numbers["card_mb"])
        say(f"memory_probe_{task}_{'_'.join(map(str, memory_class.values()))}",
            f"{numbers['need_mb']:.0f} MiB (context {numbers['context_mb']:.0f}, peak reserved "
            f"{numbers['peak_reserved_mb']:.0f}) -> share {share:g}: {trials_at_once(share)} at once, against 4 at a "
            "fixed --gpus-per-trial 0.25")


def probe_one(task: str, memory_class: dict, model_dir: str) -> dict:
    import torch

    from experiments.packing import probe_config
    from trainables.memory import probe_need_mb

    if task == "cifar10":
        from trainables.cifar10 import TASK, Cifar10Trainable as trainable

        config = probe_config(TASK, {}, memory_class)
        data = synthetic_cifar(3 * memory_class["batch_size"])
    else:
        from trainables.imdb import TASK, ImdbTrainable as trainable

        config = probe_config(TASK, {"model": model_dir}, memory_class)
        data = synthetic_tokens(3 * memory_class["batch_size"], memory_class["max_seq_length"], 30522)
    return probe_need_mb(trainable, config, torch.device("cuda"), data)


# --- a real out-of-memory error at a small share ---------------------------------------------------------
def part_oom(ctx: Context) -> None:
    """The allocator held to a small share (trainables.memory.cap_allocator, as a trial at that share
    is): allocating past it must raise torch's OutOfMemoryError while the card still has room, and
    a real training step that needs more must raise it too (the trial's error, then the retry)."""
    import torch

    from trainables.cifar10 import Cifar10Run
    from trainables.memory import cap_allocator

    device, share = device_of(True), 0.01
    fraction = cap_allocator(device, share)
    total = torch.cuda.get_device_properties(device).total_memory
    blocks, error = [], None
    try:
        while len(blocks) < 10_000:
            blocks.append(torch.empty(64 * 2**20, dtype=torch.uint8, device=device))
    except torch.OutOfMemoryError as exc:
        error = exc
    held = len(blocks) * 64
    free = torch.cuda.mem_get_info(device)[0] / 2**20
    blocks.clear()
    torch.cuda.empty_cache()
    say("oom_allocator_cap", f"{'raised' if error else 'NOT raised'} after {held} MiB held, cap {fraction * total / 2**20:.0f} "
                             f"MiB (share {share} less the context), the card's free memory then {free:.0f} MiB")
    run, raised = None, "NOT raised"
    try:
        run = Cifar10Run(cifar_config(512), synthetic_cifar(2048), device)
        run.train_epoch()
    except torch.OutOfMemoryError:
        raised = "raised"
    say("oom_training_step", f"{raised}: CIFAR-10 ResNet-18 at batch 512 under the cap of share {share}")


# --- fp16 with a gradient scaler, forced on a bf16 card ---------------------------------------------------
def part_fp16(ctx: Context) -> None:
    """The path older cards take (core.rules.training_precision: fp16 autocast and a GradScaler), forced
    on: CIFAR-10 and IMDB train a few epochs, the losses stay finite, the scale is reported; the time
    per epoch against the card's own precision."""
    import contextlib
    import math
    from unittest import mock

    import torch

    from trainables import device as device_module
    from trainables.cifar10 import Cifar10Run
    from trainables.imdb import ImdbRun

    device, size = device_of(True), sizes(True)
    model = random_distilbert(ctx)
    runs = {"cifar10": lambda: Cifar10Run(cifar_config(128), synthetic_cifar(1024), device),
            "imdb": lambda: ImdbRun(bert_config(True, model), synthetic_tokens(64, size["tokens"], 30522), device)}
    for name, make in runs.items():
        seconds = {}
        for precision in ("fp16", "native"):
            forced = mock.patch.object(device_module, "training_precision", lambda capability: "fp16")
            with forced if precision == "fp16" else contextlib.nullcontext():
                run = make()
            losses = [run.train_epoch()]
            torch.cuda.synchronize()
            started = time.perf_counter()
            losses += [run.train_epoch() for _ in range(2)]
            torch.cuda.synchronize()
            seconds[precision] = (time.perf_counter() - started) / 2
            if precision == "fp16":
                scaler = run.precision.scaler
                say(f"fp16_{name}", f"{run.precision.name}, scaler {'on' if scaler.is_enabled() else 'OFF'} at scale "
                                    f"{scaler.get_scale():g}; losses {' '.join(f'{x:.3f}' for x in losses)} "
                                    f"({'finite' if all(map(math.isfinite, losses)) else 'NOT finite'})")
            run.release()
        say(f"fp16_{name}_epoch_vs_native", f"{seconds['fp16'] / seconds['native']:.2f} (seconds per epoch, fp16 over "
                                            "the card's own precision)")
