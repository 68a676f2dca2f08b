"""A task whose trials need a stated share of the GPU (config ``needs``) and run out of memory
below it, the way a packed trial does on a real card (tests/test_out_of_memory.py). The test
session's Ray declares a GPU that this machine does not have, so the trials compute on the CPU
(``trial_device``) while Ray places and re-places them by their GPU share exactly as on a card."""

from __future__ import annotations

import torch
from torch import nn

from core.task import TaskSpec
from trainables.base import EpochTrainable, TrainingRun

class NeedsMemoryRun(TrainingRun):
    granted = 0.0  # the share of the trial being built (the trainable sets it before building)

    def __init__(self, config, data, device):
        if config.get("at_init") and config["needs"] > NeedsMemoryRun.granted:  # the model does not fit on the card
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {config['needs']:g} of the card "
                                         "while moving the model (simulated)")
        super().__init__(config, data, device)
        self.model = nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.n_train = 1
        self.share = 0.0  # the share of the card the trial holds (set by the trainable)

    def train_epoch(self) -> float:
        if self.config["needs"] > self.share:
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
        return torch.device("cpu")

    def _start(self, config):
        NeedsMemoryRun.granted = self._share
        super()._start(config)
        self._run.share = self._share  # the share Ray granted this trial (EpochTrainable.setup read it)


TASK = TaskSpec(name="needs_memory", trainable="tests.oom_task:NeedsMemoryTrainable",
                space={"needs": (0.1, 0.5, 2.0), "num_epochs": (2,)}, gpus_per_trial=0.25, memory_params=("needs",),
                smoke_space={"needs": (0.1, 0.5, 2.0), "num_epochs": (1,)})
NeedsMemoryTrainable.task = TASK
