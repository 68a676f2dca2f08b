"""A trial's GPU memory: the share of the card Ray gave it, the allocator held to that share, and
the one-line error of a trial that ran out of it (experiments.callbacks.OutOfMemoryRetry re-queues
such a trial once with the whole card, core.rules.oom_retry_share)."""

from __future__ import annotations

import torch


class TrialOutOfMemory(RuntimeError):
    """The trial ran out of GPU memory at a share of the card smaller than the whole."""


def gpu_share(trainable) -> float:
    """The GPU share of the trial a Ray Tune Trainable runs (its resource request; 0 outside Tune)."""
    resources = getattr(trainable, "trial_resources", None)
    if resources is None or not hasattr(resources, "required_resources"):
        return 0.0
    return float(resources.required_resources.get("GPU", 0.0))


def cap_allocator(device: torch.device, share: float) -> float | None:
    """Hold this process's PyTorch allocator to ``share`` of the card: a trial that needs more fails
    itself with an out-of-memory error instead of taking the memory of the trials packed next to it
    (which then fail in turn). The fraction applies to this process for the rest of its life, so a
    reused worker is held to its current trial's share. Returns the fraction set (None: no cap)."""
    if device.type != "cuda" or not 0 < share < 1:
        return None
    torch.cuda.set_per_process_memory_fraction(share, device)
    return share


def out_of_memory_line(share: float, error: BaseException) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (f"out of GPU memory at {share:g} of the card ({first.strip()[:160]}); re-queued once alone on the card "
            "where --max-failures allows; to pack fewer trials: a smaller --max-concurrent, a larger "
            "--gpus-per-trial, or --gpus-per-trial auto")
