"""A stand-in for NVIDIA's NVML (the ``pynvml`` module of nvidia-ml-py) on a machine with
GPUs: the only other way to test GPU discovery and sampling is real cards. It answers the
calls experiments/gpus.py makes, with the same names, error classes and units (bytes, %)."""

from __future__ import annotations

from types import SimpleNamespace


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_LibRmVersionMismatch(NVMLError):  # noqa: N801 - pynvml's name
    pass


class FakeNvml:
    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded

    def __init__(self, cards=(("NVIDIA H200", 141_000), ("NVIDIA H200", 141_000)), fail_init: Exception | None = None,
                 mig: dict | None = None, unsupported=()):
        """``cards``: (name, total MiB) per card, in NVML's (PCI bus) order; ``mig``: card index -> MiB
        of each of its MIG slices (7 slots, the rest empty); ``unsupported``: the reads that raise
        NVML's "not supported" (``"utilization"``, ``"memory"``), as on a MIG slice."""
        self.cards = [SimpleNamespace(index=i, name=name, total=mib * 2**20, used=(100 + 1000 * i) * 2**20,
                                      util=10 + 60 * i, uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-{i:012d}", slices=[])
                      for i, (name, mib) in enumerate(cards)]
        for i, sizes in (mig or {}).items():
            self.cards[i].slices = [SimpleNamespace(name=self.cards[i].name, total=mib * 2**20, used=50 * 2**20,
                                                    util=None, uuid=f"MIG-{i:04d}{k:04d}-dddd-eeee-ffff-{k:012d}",
                                                    slices=[]) for k, mib in enumerate(sizes)]
        self.unsupported = set(unsupported)
        self.fail_init = fail_init
        self.open = 0  # nvmlInit calls not yet shut down
        self.samples = 0

    def nvmlInit(self):
        if self.fail_init is not None:
            raise self.fail_init
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlDeviceGetCount(self):
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.cards[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return next(c for c in [*self.cards, *(s for c in self.cards for s in c.slices)] if c.uuid == uuid)

    NVML_COMPUTEMODE_EXCLUSIVE_PROCESS = 3

    def nvmlDeviceGetComputeMode(self, card):
        return 3 if getattr(card, "exclusive", False) else 0

    def nvmlDeviceGetCudaComputeCapability(self, card):
        return {"NVIDIA A100": (8, 0), "NVIDIA H200": (9, 0), "NVIDIA L4": (8, 9), "Tesla T4": (7, 5),
                "Tesla V100-SXM2-32GB": (7, 0)}.get(card.name, (8, 0))

    def nvmlDeviceGetMaxMigDeviceCount(self, card):
        return 7 if card.slices else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, card, k):
        if k >= len(card.slices):
            raise NVMLError("Not Found")
        return card.slices[k]

    def nvmlDeviceGetUUID(self, card):
        return card.uuid

    def nvmlDeviceGetName(self, card):
        return card.name

    def nvmlDeviceGetMemoryInfo(self, card):
        if "memory" in self.unsupported:
            raise NVMLError("Not Supported")
        self.samples += 1
        return SimpleNamespace(total=card.total, used=card.used + self.samples * 2**20, free=card.total - card.used)

    def nvmlDeviceGetUtilizationRates(self, card):
        if "utilization" in self.unsupported or card.util is None:  # a MIG slice has no utilization of its own
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=card.util, memory=0)
