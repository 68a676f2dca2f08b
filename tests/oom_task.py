"""A task whose trials need a stated share of the GPU (config ``needs``) and run out of memory
below it, the way a packed trial does on a real card (tests/test_out_of_memory.py). The test
session's Ray declares a GPU that this machine does not have, so the trials compute on the CPU
(``trial_device``) while Ray places and re-places them by their GPU share exactly as on a card."""

from __future__ import annotations

import torch
from torch import nn

from core.task import TaskSpec
from trainables.base import EpochTrainable, TrainingRun
from trainables.memory import gpu_share

SHARE = 0.0  # the share of the card the running trial holds (one trial per worker process at a time)


class NeedsMemoryRun(TrainingRun):
    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.model = nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.n_train = 1

    def train_epoch(self) -> float:
        if self.config["needs"] > SHARE:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {self.config['needs']:g} of the card "
                                         "(simulated)")
        return 0.1

    def evaluate(self, split):
        value = 0.5 + self.config["needs"] / 10
        return {"accuracy": value, "f1": value, "auc": value, "loss": 1 - value}


class NeedsMemoryTrainable(EpochTrainable):
    run_cls = NeedsMemoryRun
    load_data = staticmethod(lambda config: None)

    def trial_device(self):
        global SHARE
        SHARE = gpu_share(self)
        return torch.device("cpu")


TASK = TaskSpec(name="needs_memory", trainable="tests.oom_task:NeedsMemoryTrainable",
                space={"needs": (0.1, 0.5, 2.0), "num_epochs": (2,)}, gpus_per_trial=0.25)
NeedsMemoryTrainable.task = TASK
