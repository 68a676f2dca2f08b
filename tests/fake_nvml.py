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

    def __init__(self, cards=(("NVIDIA H200", 141_000), ("NVIDIA H200", 141_000)), fail_init: Exception | None = None):
        """``cards``: (name, total MiB) per card, in NVML's (PCI bus) order."""
        self.cards = [SimpleNamespace(index=i, name=name, total=mib * 2**20, used=(100 + 1000 * i) * 2**20,
                                      util=10 + 60 * i, uuid=f"GPU-{i:08d}-aaaa-bbbb-cccc-{i:012d}")
                      for i, (name, mib) in enumerate(cards)]
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
        return next(c for c in self.cards if c.uuid == uuid)

    def nvmlDeviceGetUUID(self, card):
        return card.uuid

    def nvmlDeviceGetName(self, card):
        return card.name

    def nvmlDeviceGetMemoryInfo(self, card):
        self.samples += 1
        return SimpleNamespace(total=card.total, used=card.used + self.samples * 2**20, free=card.total - card.used)

    def nvmlDeviceGetUtilizationRates(self, card):
        return SimpleNamespace(gpu=card.util, memory=0)
