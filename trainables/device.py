"""Where and how a trial computes: the device Ray assigned (CPU or its GPU), the precision the card
trains in, and the preflight every trial's first step repeats. (Re-exported by trainables.base.)"""

from __future__ import annotations

import torch

from core.rules import training_precision


class CudaUnavailable(RuntimeError):
    """Ray gave this worker a GPU, but this torch cannot use CUDA (one line for the user)."""


def choose_device(gpu_ids: list | None = None, cuda_available: bool | None = None) -> torch.device:
    """CUDA where Ray assigned this worker a GPU, else the CPU.

    Only Ray's assignment counts (``ray.get_gpu_ids()``; empty in the driver and outside Ray):
    a worker that asked for no GPU keeps the driver's CUDA_VISIBLE_DEVICES (ray issue 54868),
    so ``torch.cuda.is_available()`` alone would put 0-GPU trials on the card. A worker given
    a GPU that torch cannot use raises ``CudaUnavailable`` rather than training on the CPU
    unnoticed. The arguments stand in for Ray's and torch's answers (tests)."""
    if gpu_ids is None:
        try:
            import ray
        except ImportError:  # no Ray, so no Ray assignment: the CPU (gpu_check passes its device itself)
            ray = None
        gpu_ids = ray.get_gpu_ids() if ray is not None and ray.is_initialized() else []
    if not gpu_ids:
        return torch.device("cpu")
    if not (torch.cuda.is_available() if cuda_available is None else cuda_available):
        raise CudaUnavailable(
            f"Ray gave this trial GPU {', '.join(map(str, gpu_ids))}, but torch {torch.__version__} cannot use CUDA "
            f"(built for CUDA {torch.version.cuda or 'none: a CPU-only build'}); install a torch build that matches "
            "the NVIDIA driver, or run with --gpus-per-trial 0")
    return torch.device("cuda", 0)  # Ray sets CUDA_VISIBLE_DEVICES to the assigned card: it is device 0


class MixedPrecision:
    """Autocast and gradient scaling of a TrainingRun on ``device``, by core.rules.training_precision:
    bf16 autocast on a card that computes it natively, fp16 autocast with a GradScaler on an older
    one (fp16's range needs the loss scaled), nothing on the CPU. The master weights stay fp32."""

    def __init__(self, device: torch.device):
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        self.name = training_precision(capability)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name, torch.bfloat16)
        self.autocast = torch.autocast("cuda", dtype=dtype, enabled=self.name != "fp32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.name == "fp16")

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_norm: float | None = None,
             parameters=None) -> None:
        """backward, optional gradient clipping (on the unscaled gradients), optimizer step."""
        self.scaler.scale(loss).backward()
        if clip_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        self.scaler.step(optimizer)  # skipped where fp16 gradients overflowed; the scale then shrinks
        self.scaler.update()


def preflight() -> dict:
    """What every trial first does on its GPU, in a second: the device Ray assigned (CudaUnavailable
    where torch cannot use it) and a matmul under the trials' autocast there (experiments.machine.preflight)."""
    device = choose_device()
    precision = MixedPrecision(device)
    with precision.autocast:
        product = torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"device": str(device), "precision": precision.name, "dtype": str(product.dtype)}
