"""``--gpus-per-trial auto``: trials packed on the card by measured memory.

Before the first method, each memory class of the space (every combination of the values of the
task's ``memory_params``: batch size, sequence length, ...) is probed once, alone on the card
(a Ray task holding the whole GPU runs trainables.memory.probe_need_mb: a short epoch at the
class's largest, the CUDA context included). A trial then asks Ray for its class's share
(``share_for``: the need plus a declared margin, rounded up), so small configurations pack
tightly and large ones get room; trials.csv records each trial's share. A probe that
underestimates is caught by the allocator cap and the out-of-memory retry (trainables.memory).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Mapping

from core.task import TaskSpec

AUTO = "auto"  # the value of --gpus-per-trial that asks for this


def given_share(gpus_per_trial) -> float | None:
    """--gpus-per-trial as a fixed share, or None where it was not given or is auto."""
    return None if gpus_per_trial in (None, AUTO) else float(gpus_per_trial)
# Declared, not tuned: a probe sees a few batches (their peak can miss the allocator's later
# fragmentation and the evaluation's buffers), so each class asks for 15% above what it measured.
MARGIN = 0.15
GRANULARITY = 0.01  # shares are whole hundredths of the card (Ray accepts 1e-4)


def memory_classes(task: TaskSpec) -> list[dict]:
    """Every combination of the values of the task's memory_params ([{}] where it declares none)."""
    names = task.memory_params
    return [dict(zip(names, values)) for values in itertools.product(*(task.space[n] for n in names))]


def class_key(task: TaskSpec, config: Mapping) -> str:
    """The memory class of a configuration, as run.json records it: its memory_params' values."""
    return json.dumps([config[name] for name in task.memory_params])


def probe_config(task: TaskSpec, options: Mapping, memory_class: Mapping) -> dict:
    """The configuration a class is probed with: its values, one epoch, the first value of every
    other hyperparameter (they do not change memory), the options plus the task's probe_options."""
    config = {name: values[0] for name, values in task.space.items()}
    return {**config, **memory_class, task.epochs_param: 1, **options, **task.probe_options, "seed": 0}


def share_for(need_mb: float, card_mb: float) -> float:
    """The share of a ``card_mb`` card a trial needing ``need_mb`` asks for: the need plus MARGIN,
    rounded up to GRANULARITY, at most the whole card."""
    share = math.ceil(need_mb * (1 + MARGIN) / card_mb / GRANULARITY - 1e-9) * GRANULARITY
    return round(min(1.0, max(GRANULARITY, share)), 4)


def trials_at_once(share: float, gpus: float = 1.0) -> int:
    """How many trials of ``share`` fit on ``gpus`` cards at once. Not ``gpus // share``: floor
    division is exact on the binary floats, so ``1 // 0.1`` is 9.0; the quotient is rounded first."""
    return math.floor(round(gpus / share, 6))


def probe(task: TaskSpec, options: Mapping, cpus: float) -> dict[str, dict]:
    """Measure every memory class alone on the card (one Ray task each, holding the whole GPU):
    class key -> probe_need_mb's numbers plus its ``share``."""
    import ray

    from trainables.memory import probe_need_mb

    remote = ray.remote(num_cpus=cpus, num_gpus=1, max_calls=1, max_retries=0)(probe_need_mb)
    trainable = task.load_trainable()
    measured = {}
    for memory_class in memory_classes(task):
        numbers = ray.get(remote.remote(trainable, probe_config(task, options, memory_class)), timeout=900)
        measured[class_key(task, memory_class)] = {**numbers, "share": share_for(numbers["need_mb"], numbers["card_mb"])}
    return measured


class SharePerConfig:
    """Ray Tune's per-trial resource request (``tune.with_resources`` with a function of the config):
    the CPUs every trial asks for, and its memory class's GPU share."""

    def __init__(self, task: TaskSpec, cpus: float, shares: Mapping[str, float]):
        self.task, self.cpus, self.shares = task, cpus, dict(shares)

    def __call__(self, config):
        from ray.tune.execution.placement_groups import PlacementGroupFactory

        return PlacementGroupFactory([{"CPU": self.cpus, "GPU": self.shares[class_key(self.task, config)]}])
