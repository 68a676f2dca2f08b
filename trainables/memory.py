"""A trial's GPU memory: the share of the card Ray gave it, the allocator held to that share, and
the one-line error of a trial that ran out of it (experiments.callbacks.OutOfMemoryRetry re-queues
such a trial once with the whole card, core.rules.oom_retry_share)."""

from __future__ import annotations

import os
import resource

import torch


class TrialOutOfMemory(RuntimeError):
    """The trial ran out of GPU memory at a share of the card smaller than the whole."""


def gpu_share(trainable) -> float:
    """The GPU share of the trial a Ray Tune Trainable runs (its resource request; 0 outside Tune)."""
    resources = getattr(trainable, "trial_resources", None)
    if resources is None or not hasattr(resources, "required_resources"):
        return 0.0
    return float(resources.required_resources.get("GPU", 0.0))


# This process's memory on the card outside PyTorch's allocator (its CUDA context, the libraries'
# workspaces) where NVML cannot say: 0.3-0.6 GB on current cards and drivers, so the larger.
DEFAULT_CONTEXT_MB = 600


def cap_allocator(device: torch.device, share: float) -> float | None:
    """Hold this process's PyTorch allocator to its part of ``share`` of the card: a trial that needs
    more fails itself with an out-of-memory error instead of taking the memory of the trials packed
    next to it (which then fail in turn). ``set_per_process_memory_fraction`` caps the allocator's cache
    only; the process's CUDA context sits outside it, so four trials capped at 0.25 would together hold
    the card plus four contexts. The cap is the share less the context, measured (``context_bytes``) or
    DEFAULT_CONTEXT_MB; a share too small to hold the context keeps half of itself for the allocator.
    The fraction applies to this process for the rest of its life, so a reused worker is held to its
    current trial's share. Returns the fraction set (None: no cap)."""
    if device.type != "cuda" or not 0 < share < 1:
        return None
    torch.zeros(1, device=device)  # the context exists from here on: it can be measured
    total = torch.cuda.get_device_properties(device).total_memory
    context = context_bytes(device)
    fraction = allocator_fraction(share, DEFAULT_CONTEXT_MB * 2**20 if context is None else context, total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def allocator_fraction(share: float, context: float, total: float) -> float:
    """The allocator's cap for a trial given ``share`` of a ``total``-byte card, ``context`` bytes of which
    its process holds outside the allocator."""
    rest = share - context / total
    return rest if rest > share / 2 else share / 2


def context_bytes(device: torch.device) -> float | None:
    """This process's memory on the card outside PyTorch's allocator: NVML's count for this process
    less what the allocator has reserved. None where NVML cannot say (no NVML, or a container whose
    process ids NVML does not see)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            used = next((p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                         if p.pid == os.getpid()), None)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML missing, or the card unknown to it: the declared default
        return None
    if not used:
        return None
    return float(max(0, used - torch.cuda.memory_reserved(device)))


def out_of_memory_line(share: float, error: BaseException) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (f"out of GPU memory at {share:g} of the card ({first.strip()[:160]}); re-queued once alone on the card "
            "where --max-failures allows; to pack fewer trials: a smaller --max-concurrent, a larger "
            "--gpus-per-trial, or --gpus-per-trial auto")


def probe_need_mb(trainable_cls, config, device: torch.device | None = None, data=None) -> dict:
    """What one configuration needs of the card, measured alone on it (experiments.packing): one
    short epoch of ``config`` (the task's probe_options make it a few batches at its largest),
    then the card's memory in use before the run (this process's CUDA context, and anything
    else on the card) plus the allocator's peak reservation. MiB. ``device`` and ``data``: Ray's
    assignment and the task's loader where not given (benchmarks/gpu_check.py gives both)."""
    from trainables.base import seed_everything
    from trainables.device import choose_device

    device = device or choose_device()
    if device.type != "cuda":
        raise RuntimeError("the memory probe needs the GPU Ray assigned (it ran without one)")
    torch.cuda.init()
    torch.zeros(1, device=device)  # the CUDA context exists from here on
    free, total = torch.cuda.mem_get_info(device)
    before = total - free
    data = trainable_cls.load_data(config) if data is None else data
    seed_everything(int(config.get("seed", 0)))
    torch.cuda.reset_peak_memory_stats(device)
    run = trainable_cls.run_cls(config, data, device)
    run.train_epoch()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_reserved(device)
    run.release()
    return {"need_mb": (before + peak) / 2**20, "context_mb": before / 2**20, "peak_reserved_mb": peak / 2**20,
            "card_mb": total / 2**20}


# --- the host memory a trial reports ----------------------------------------------------------
def reset_peak_rss() -> None:
    """Start this process's peak resident memory again (Linux: VmHWM, reset through clear_refs), so a
    trial in a reused worker reports its own peak, not the worker's since it started."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the lifetime peak (ru_maxrss) stands
        pass


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB) since the last ``reset_peak_rss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux: the lifetime peak
