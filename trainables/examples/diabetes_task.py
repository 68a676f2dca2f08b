"""Your own task in one file: a regression MLP on scikit-learn's diabetes data, tuned for the
lowest validation RMSE.

    lowres-tune example diabetes > diabetes_task.py     # this file, into your folder
    lowres-tune --task diabetes_task.py --budget smoke

A task file defines ``TASK``, a ``TaskSpec`` (the grid, the metric and its direction), and the
pieces that train one configuration: ``load_data`` (once per worker), a ``TrainingRun`` (model,
optimizer, one epoch, the metrics of a split) and an ``EpochTrainable`` that joins them.
docs/your-own-task.md walks through it. The data ship with scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from core.task import TaskSpec
from trainables.base import EpochTrainable, TrainingRun, regression_metrics

SPLIT_SEED = 0  # one train/validation/test split for every run seed, so methods see the same data

# The grid: 2 x 2 x 2 x 2 x 3 = 48 configurations. Every searcher draws from these values.
SPACE = {
    "learning_rate": (1e-2, 1e-3),
    "batch_size": (16, 64),
    "hidden_layers": (1, 2),
    "hidden_units": (32, 128),
    "num_epochs": (20, 60, 180),  # each configuration's own epochs; ASHA's resource
}


_CACHE: dict = {}  # the splits, once per worker process. (Not functools.lru_cache: docs/your-own-task.md)


def _splits():
    if "splits" in _CACHE:
        return _CACHE["splits"]
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_diabetes(return_X_y=True)  # 442 patients, 10 features, disease progression after a year
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, train_size=0.6, random_state=SPLIT_SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=SPLIT_SEED)
    scaler = StandardScaler().fit(x_train)  # statistics of the training part only
    mean, std = float(y_train.mean()), float(y_train.std())
    splits = {name: (scaler.transform(xs).astype(np.float32), ((ys - mean) / std).astype(np.float32))
              for name, xs, ys in (("train", x_train, y_train), ("val", x_val, y_val), ("test", x_test, y_test))}
    _CACHE["splits"] = splits, (mean, std)
    return _CACHE["splits"]


def load_data(config):
    """{split: (features, standardized target)} and the target's (mean, std), to report RMSE in its units."""
    return _splits()


class DiabetesRun(TrainingRun):
    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        splits, (self.mean, self.std) = data
        self.tensors = {name: (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
                        for name, (x, y) in splits.items()}
        self.n_train = len(self.tensors["train"][1])
        layers, width = [], self.tensors["train"][0].shape[1]
        for _ in range(int(config["hidden_layers"])):
            layers += [nn.Linear(width, int(config["hidden_units"])), nn.ReLU()]
            width = int(config["hidden_units"])
        self.model = nn.Sequential(*layers, nn.Linear(width, 1)).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(config["learning_rate"]))
        self.batch_size = int(config["batch_size"])
        self.generator = torch.Generator().manual_seed(int(config.get("seed", 0)))  # the run seed shuffles

    def train_epoch(self) -> float:
        x, y = self.tensors["train"]
        order = torch.randperm(len(y), generator=self.generator).to(self.device)
        self.model.train()
        total = 0.0
        for start in range(0, len(y), self.batch_size):
            idx = order[start:start + self.batch_size]
            loss = nn.functional.mse_loss(self.model(x[idx]).squeeze(1), y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss) * len(idx)
        return total / len(y)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """RMSE and MAE in the target's units (the metrics TASK declares), and the loss."""
        x, y = self.tensors[split]
        self.model.eval()
        prediction = self.model(x).squeeze(1)
        loss = float(nn.functional.mse_loss(prediction, y))
        unscale = lambda t: t.cpu().numpy() * self.std + self.mean  # noqa: E731
        return {**regression_metrics(unscale(y), unscale(prediction)), "loss": loss}

    def release(self):
        self.tensors = None
        super().release()


TASK = TaskSpec(
    name="diabetes",
    trainable="DiabetesTrainable",  # a class of this file (below); "module:Class" names one elsewhere
    space=SPACE,
    metric="val_rmse",  # what every method optimizes ...
    mode="min",  # ... downwards
    metrics=("rmse", "mae", "loss"),  # what DiabetesRun.evaluate returns: val_* each epoch, test_* of each pick
    # What a trial whose loss turns NaN reports: worse than predicting the mean (RMSE about 77)
    diverged_values={"rmse": 1000.0, "mae": 1000.0, "loss": math.inf},
    smoke_space={"num_epochs": (2, 4), "hidden_units": (32,), "batch_size": (64,)},
    smoke_num_samples=4,
    description="scikit-learn's diabetes data, regression MLP, validation RMSE",
)


class DiabetesTrainable(EpochTrainable):
    task = TASK
    run_cls = DiabetesRun
    load_data = staticmethod(load_data)
