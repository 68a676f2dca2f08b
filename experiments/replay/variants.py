"""Grid and random search in the replay: the configurations Ray's generator draws, drawn once per process.

Grid and random search draw their configurations from Ray's BasicVariantGenerator, whose every trial
costs ~2 ms (a deep copy of the search space and an argparse of the trial's spec): 15 of 22 s of a
random:asha replay on an LCBench table (7,356 trials). The sequence depends only on the space, the
seed and the number of samples, so a process draws it once and every replay of that (searcher,
seed), on any table and under any scheduler, reads it; tests/test_replay.py checks the replay is
the same with and without (FAST_VARIANTS). The generator's own concurrency limit never binds in the
replay: a trial is asked for only when a simulated worker is free and none waits.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile

from ray.tune.experiment import Experiment, Trial
from ray.tune.search.basic_variant import BasicVariantGenerator

from searchers import SEARCHERS, MethodArgs

FAST_VARIANTS = True  # off: the replay asks Ray's generator itself (the test compares the two)


def _generator_for(searcher: str, args: MethodArgs, param_space: dict, trainable):
    """A fresh Ray generator of the searcher's configurations (its factory's, with no limit and no
    scheduler attached), its experiment added as tune.run adds it."""
    plan = SEARCHERS[searcher](dataclasses.replace(args, max_concurrent=0, paused=None))
    generator = plan.search_alg or BasicVariantGenerator()
    task = args.task
    storage = tempfile.mkdtemp(prefix="replay-variants-")  # the trials' (unused) storage, while the process lives
    atexit.register(shutil.rmtree, storage, True)
    experiment = Experiment(name="replay", run=trainable, config=param_space, num_samples=plan.num_samples,
                            storage_path=storage)
    generator.set_search_properties(task.metric, task.mode, param_space, **experiment.public_spec)
    generator.add_configurations([experiment])
    return generator


class _Variants:
    """The configurations one Ray generator yields, in order, drawn as far as a replay needed them."""

    def __init__(self, make_generator):
        self._make_generator = make_generator
        self._generator = None
        self.configs: list[dict] = []
        self.finished = False

    def config(self, i: int) -> dict | None:
        while len(self.configs) <= i and not self.finished:
            if self._generator is None:
                self._generator = self._make_generator()
            trial = self._generator.next_trial()
            if trial is None:
                self.finished = True
            else:
                self.configs.append(trial.config)
        return self.configs[i] if i < len(self.configs) else None


_DRAWN: dict[tuple, _Variants] = {}  # (searcher, space, seed, num_samples) -> what was drawn, in this process


def _variants(searcher: str, space: tuple, seed: int, num_samples: int, make_generator) -> _Variants:
    key = (searcher, space, seed, num_samples)
    if key not in _DRAWN:
        if len(_DRAWN) >= 16:  # a suite's process cycles through seeds: keep the memory bounded
            _DRAWN.pop(next(iter(_DRAWN)))
        _DRAWN[key] = _Variants(make_generator)
    return _DRAWN[key]


class _LightTrial:
    """What the replay's schedulers read of a trial: its id, config, status and last result."""

    __slots__ = ("trial_id", "config", "status")

    def __init__(self, trial_id: str, config: dict):
        self.trial_id, self.config, self.status = trial_id, config, Trial.PENDING

    def set_status(self, status: str) -> None:
        self.status = status

    @property
    def last_result(self) -> dict:  # what a restored trial carries (searchers/promotion.py); a replay restores none
        return {}


class _ReplayedVariants:
    """The generator's place in one replay: the drawn configurations in order, as light trials."""

    def __init__(self, variants: _Variants):
        self._variants, self._next = variants, 0
        self._finished = False

    def next_trial(self):
        config = self._variants.config(self._next)
        if config is None:
            self._finished = True  # as Ray's generator: finished once a call found nothing left
            return None
        self._next += 1
        return _LightTrial(f"replay_{self._next:05d}", config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def is_finished(self) -> bool:
        return self._finished


def replayed(searcher: str, args: MethodArgs, param_space: dict, trainable) -> _ReplayedVariants:
    """The generator's stand-in for one replay of ``searcher`` (grid or random) with ``args``."""
    space = tuple((k, tuple(v)) for k, v in args.task.space.items())
    return _ReplayedVariants(_variants(searcher, space, args.seed, args.num_samples,
                                       lambda: _generator_for(searcher, args, param_space, trainable)))
