"""What a GPU-assigned Ray worker is given, reported from inside it (tests/test_gpu_ray.py);
a module of its own so that Ray's workers can import it."""

from __future__ import annotations

import os

import ray
from ray import tune

from trainables.base import CudaUnavailable, choose_device


class DeviceProbe(tune.Trainable):
    """Reports what a trial is given and which device our trainables would choose with it."""

    def setup(self, config):
        self.epoch = 0

    def step(self):
        self.epoch += 1
        try:
            device, error = str(choose_device()), ""
        except CudaUnavailable as exc:
            device, error = "", str(exc)
        return {"epoch": self.epoch, "val_accuracy": 0.5, "gpu_ids": ",".join(map(str, ray.get_gpu_ids())),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), "device": device,
                "error": error, "pid": os.getpid(), "done": True}


def scoring_probe():
    return ",".join(map(str, ray.get_gpu_ids())), os.getpid()
