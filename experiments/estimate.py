"""The grid's compute, estimated before a run: what a ``--time-budget`` is a share of.

An epoch's cost per configuration is the task's declared ``epoch_seconds`` where it has one, else
measured: one epoch (training and validation, with the run's own options) of one configuration of
each memory class (``TaskSpec.memory_params``: the hyperparameters that change a trial's size), in a
Ray task holding one trial's resources, so it is timed where and as a trial trains. The first epoch
of a fresh process includes warm-up (kernels chosen, caches filled): the estimate leans high, so the
budget's share of the grid leans low. Compute is in the budget's unit (experiments.budget): x the
trial's GPU share on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from core.task import TaskSpec
from experiments import packing


@dataclass(frozen=True)
class Estimate:
    epoch_cost: dict  # memory class key -> one epoch's compute (packing.class_key)
    grid_compute: float  # every configuration of the grid trained for all its epochs
    cheapest_epoch: float  # one epoch of the cheapest configuration
    unit: str  # trial_seconds or gpu_seconds
    measured: bool  # False: from the task's declared epoch_seconds

    def record(self) -> dict:
        return asdict(self)


def measure_epochs(task: TaskSpec, options: Mapping, resources: Mapping[str, float],
                   shares: Mapping[str, float]) -> dict[str, float]:
    """Seconds of one epoch per memory class, each in a Ray task with a trial's resources."""
    import ray

    from trainables.base import time_epoch

    trainable = task.load_trainable()
    seconds = {}
    for memory_class in packing.memory_classes(task):
        key = packing.class_key(task, memory_class)
        config = {**packing.probe_config(task, options, memory_class), **options}  # the run's options, not a probe's
        remote = ray.remote(num_cpus=resources["cpu"], num_gpus=shares.get(key, resources.get("gpu", 0.0)),
                            max_calls=1, max_retries=0)(time_epoch)
        seconds[key] = float(ray.get(remote.remote(trainable, config), timeout=1800))
    return seconds


def estimate(task: TaskSpec, options: Mapping, resources: Mapping[str, float],
             shares: Mapping[str, float] | None = None) -> Estimate:
    shares = dict(shares or {})
    on_gpu = bool(resources.get("gpu"))

    def share(config) -> float:
        return shares.get(packing.class_key(task, config), resources.get("gpu", 0.0)) if on_gpu else 1.0

    configs = task.configurations()
    if task.epoch_seconds is not None:
        per_epoch = {id(c): float(task.epoch_seconds({**c, **options})) * share(c) for c in configs}
        by_class = {}
        for c in configs:
            by_class.setdefault(packing.class_key(task, c), per_epoch[id(c)])
        measured = False
    else:
        seconds = measure_epochs(task, options, resources, shares)
        per_epoch = {id(c): seconds[packing.class_key(task, c)] * share(c) for c in configs}
        by_class = {key: value * (shares.get(key, resources.get("gpu", 0.0)) if on_gpu else 1.0)
                    for key, value in seconds.items()}
        measured = True
    grid = sum(per_epoch[id(c)] * int(c[task.epochs_param]) for c in configs)
    return Estimate(epoch_cost=by_class, grid_compute=grid, cheapest_epoch=min(per_epoch.values()),
                    unit="gpu_seconds" if on_gpu else "trial_seconds", measured=measured)
