"""The machine's GPUs through NVML (``nvidia-ml-py``, NVIDIA's own binding): which exist,
which of them this process may use (``CUDA_VISIBLE_DEVICES``), and their load.

NVML is read in-process: a sample costs microseconds, where GPUtil forked ``nvidia-smi``
every second and ignored ``CUDA_VISIBLE_DEVICES`` (so ``--gpu-id 0`` inside a SLURM job or on a
shared box named the wrong card). No NVIDIA driver (NVML's library missing, or the driver
not loaded) means no GPU; any other NVML failure is a ``GpuProbeError`` with NVML's message,
because a broken driver must not look like a machine without a GPU.

Numbering: ``--gpu-id K`` is the K-th GPU of the visible set, as CUDA numbers them once
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (nvidia-smi's order), which ``machine.start_ray`` sets when
the user has not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class GpuProbeError(RuntimeError):
    """NVML is there but cannot read the GPUs (a driver/library mismatch, no permission)."""


@dataclass(frozen=True)
class Gpu:
    index: int  # position in the visible set: what --gpu-id names
    nvml_index: int  # NVML's (nvidia-smi's) index of the physical card
    uuid: str
    name: str
    memory_total_mb: float
    visible_as: str  # the CUDA_VISIBLE_DEVICES entry that selects this card (as the user wrote it)
    compute_capability: tuple[int, int] | None = None  # (major, minor), from NVML; None where it cannot say
    exclusive_process: bool = False  # compute mode EXCLUSIVE_PROCESS: one CUDA context at a time (HPC nodes)

    @property
    def is_mig(self) -> bool:
        """A MIG slice of a card (its UUID says so), not a whole card."""
        return self.uuid.startswith("MIG-")


def _nvml(nvml=None):
    if nvml is not None:
        return nvml
    import pynvml

    return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _no_driver(nvml, exc) -> bool:
    names = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
    return any(isinstance(exc, getattr(nvml, name)) for name in names if hasattr(nvml, name))


def all_gpus(nvml=None) -> list[Gpu]:
    """Every GPU NVML sees, in NVML's order, then every MIG slice of them (a MIG UUID in
    ``CUDA_VISIBLE_DEVICES`` selects one); empty without an NVIDIA driver."""
    nvml = _nvml(nvml)
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        if _no_driver(nvml, exc):
            return []
        raise GpuProbeError(f"NVML cannot read the GPUs ({exc}); check the NVIDIA driver with nvidia-smi") from None
    try:
        gpus, slices = [], []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append(Gpu(index=i, nvml_index=i, uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                            name=_text(nvml.nvmlDeviceGetName(handle)),
                            memory_total_mb=nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20, visible_as=str(i),
                            compute_capability=_capability(nvml, handle),
                            exclusive_process=_exclusive(nvml, handle)))
            slices += _mig_slices(nvml, handle, i, gpus[-1].name, gpus[-1].compute_capability)
        return gpus + slices
    except nvml.NVMLError as exc:
        raise GpuProbeError(f"NVML cannot read the GPUs ({exc}); check the NVIDIA driver with nvidia-smi") from None
    finally:
        nvml.nvmlShutdown()


def _exclusive(nvml, handle) -> bool:
    try:
        return nvml.nvmlDeviceGetComputeMode(handle) == getattr(nvml, "NVML_COMPUTEMODE_EXCLUSIVE_PROCESS", 3)
    except (nvml.NVMLError, AttributeError):
        return False


def pinned_environment(gpu: Gpu, env) -> dict[str, str]:
    """The variables that pin a run to ``gpu``: every worker sees only that card. The entry is
    the one the user's CUDA_VISIBLE_DEVICES had for it (an index or a UUID), so a SLURM job's or
    a shared box's restriction is kept; indices count in nvidia-smi's (PCI bus) order. PyTorch's
    allocator grows its segments instead of caching fixed blocks (expandable_segments): batches of
    varying length (IMDB's dynamic padding) otherwise fragment a share of the card until a trial
    runs out of memory with enough of it free. A user's own setting is kept."""
    return {"CUDA_DEVICE_ORDER": env.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), "CUDA_VISIBLE_DEVICES": gpu.visible_as,
            "PYTORCH_CUDA_ALLOC_CONF": env.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")}


def mps_running() -> bool:
    """Whether NVIDIA's Multi-Process Service runs here (its control daemon), which lets several
    processes share a card in exclusive-process mode."""
    import psutil

    return any(p.info["name"] in ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
               for p in psutil.process_iter(["name"]))


def _capability(nvml, handle) -> tuple[int, int] | None:
    try:
        return tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle))
    except (nvml.NVMLError, AttributeError):
        return None


def _mig_slices(nvml, handle, nvml_index: int, name: str, capability=None) -> list[Gpu]:
    """The MIG slices of a card (none where MIG is off or the driver has no MIG calls)."""
    try:
        count = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except (nvml.NVMLError, AttributeError):  # no MIG on this card or driver
        return []
    slices = []
    for k in range(count):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
            uuid = _text(nvml.nvmlDeviceGetUUID(mig))
            total = nvml.nvmlDeviceGetMemoryInfo(mig).total / 2**20
        except nvml.NVMLError:  # an empty slot
            continue
        slices.append(Gpu(index=-1, nvml_index=nvml_index, uuid=uuid, name=f"{name} MIG slice", memory_total_mb=total,
                          visible_as=uuid, compute_capability=capability))
    return slices


def visible_gpus(nvml=None, env: Mapping[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process may use: all of them, or those ``CUDA_VISIBLE_DEVICES`` lists
    (indices or UUID prefixes; like CUDA, the list ends at its first entry that names no GPU),
    renumbered from 0 in the listed order."""
    env = os.environ if env is None else env
    gpus = all_gpus(nvml)
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [g for g in gpus if not g.is_mig]  # CUDA shows whole cards unless told
    visible = []
    for entry in (e.strip() for e in listed.split(",")):
        match = _match(entry, gpus)
        if match is None or any(g.uuid == match.uuid for g in visible):
            break
        visible.append(Gpu(index=len(visible), nvml_index=match.nvml_index, uuid=match.uuid, name=match.name,
                           memory_total_mb=match.memory_total_mb, visible_as=entry,
                           compute_capability=match.compute_capability, exclusive_process=match.exclusive_process))
    return visible


def _match(entry: str, gpus: list[Gpu]) -> Gpu | None:
    cards = [g for g in gpus if not g.is_mig]
    if entry.isdigit():
        return cards[int(entry)] if int(entry) < len(cards) else None
    if entry.startswith(("GPU-", "MIG-")):  # a card's or a MIG slice's UUID (or a unique prefix)
        found = [g for g in gpus if g.uuid.startswith(entry)]
        return found[0] if len(found) == 1 else None
    return None  # "", "-1": CUDA stops here


class GpuSampler:
    """Utilization (%) and used memory (MiB) of one card, read through NVML; keeps NVML open
    between samples (``close()`` shuts it). Each field is read on its own: what the card does
    not support (utilization on a MIG slice) is None, and the other fields, and the monitor's
    CPU and memory sample, are kept."""

    def __init__(self, gpu: Gpu, nvml=None):
        self._nvml = _nvml(nvml)
        self._nvml.nvmlInit()
        try:
            self._handle = self._nvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
        except BaseException:
            self._nvml.nvmlShutdown()  # opened above: not left open by a sampler that never was
            raise

    def _read(self, read):
        try:
            return float(read(self._handle))
        except self._nvml.NVMLError:  # NVML_ERROR_NOT_SUPPORTED and kin: this field only
            return None

    def sample(self) -> tuple[float | None, float | None]:
        util = self._read(lambda h: self._nvml.nvmlDeviceGetUtilizationRates(h).gpu)
        memory = self._read(lambda h: self._nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20)
        return util, memory

    def close(self) -> None:
        self._nvml.nvmlShutdown()
