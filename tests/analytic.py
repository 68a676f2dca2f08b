"""A cheap analytic objective in the shape of a task, for testing searchers and the runner."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

from ray import tune

from core.task import TaskSpec

SPACE = {
    "x": (1, 2, 3, 4, 5),
    "learning_rate": (1e-4, 1e-3, 1e-2),
    "act": ("relu", "tanh"),
    "epochs": (1, 3),
}


def objective(config) -> float:
    """Peaks at x=3, learning_rate=1e-3, act=relu; NaN where config["x"] is in config["nan_x"]."""
    if config["x"] in config.get("nan_x", ()):
        return math.nan
    return 1.0 - 0.05 * (config["x"] - 3) ** 2 - 0.1 * (math.log10(config["learning_rate"]) + 3) ** 2 \
        - (0.05 if config["act"] == "tanh" else 0.0)


class AnalyticTrainable(tune.Trainable):
    """Reports the objective, approached over the epochs, with no training at all."""

    def setup(self, config):
        self.epoch = 0

    def reset_config(self, new_config):
        self.epoch = 0
        return True

    def step(self):
        if self.config["x"] in self.config.get("oom_once_x", ()):  # a transient out-of-memory error
            mark = Path(self.config["oom_marks"]) / str(self.config["x"])
            if not mark.exists():
                mark.touch()
                import torch

                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        if self.config["x"] in self.config.get("kill_x", ()):  # the worker dies as the OOM killer would end it
            marks = self.config.get("kill_marks")  # given: only the first attempt dies
            mark = Path(marks) / str(self.config["x"]) if marks else None
            if mark is None or not mark.exists():
                if mark is not None:
                    mark.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if self.config["x"] in self.config.get("fail_x", ()):
            raise RuntimeError(f"x={self.config['x']} is set to fail")
        self.epoch += 1
        time.sleep(self.config.get("sleep_s", 0.0))  # a run slow enough to be killed mid-method (tests/budget_task.py)
        value = objective(self.config) * (1 - 0.5 ** self.epoch)
        # A made-up, configuration-dependent epoch time: replay tables need one.
        seconds = 0.1 * self.config["x"] + (0.05 if self.config["act"] == "tanh" else 0.0)
        return {"epoch": self.epoch, "val_accuracy": value, "epoch_seconds": seconds,
                "done": self.epoch >= self.config["epochs"]}

    def save_checkpoint(self, checkpoint_dir):
        # the epoch is its whole state: a paused trial (promotion-type ASHA) goes on from it
        Path(checkpoint_dir, "epoch.json").write_text(json.dumps({"epoch": self.epoch}))

    def load_checkpoint(self, checkpoint):
        path = checkpoint if isinstance(checkpoint, str) else checkpoint.path
        saved = Path(path, "epoch.json")
        if saved.exists():
            self.epoch = json.loads(saved.read_text())["epoch"]


TASK = TaskSpec(name="analytic", trainable="tests.analytic:AnalyticTrainable", space=SPACE, epochs_param="epochs",
                grace_period=1, reduction_factor=2, gpus_per_trial=0.0)  # CPU arithmetic: no GPU share
