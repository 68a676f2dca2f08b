"""What every task's training shares: seeding, the TrainingRun and the per-epoch Trainable that Ray
Tune runs, checkpoints. (The task's declaration, ``TaskSpec``, is ``core.task``; the device and
precision are ``trainables.device``, the metrics ``trainables.metrics``, GPU and host memory
``trainables.memory``, all importable from here.)

A task module (``trainables/<task>.py``) supplies two plain pieces with no Ray in them:
``load_data(config)`` (once per worker process, cached by the data options) and a
``TrainingRun`` subclass (one configuration being trained). ``EpochTrainable`` turns them
into a Ray Tune ``Trainable`` where one ``step()`` is one epoch.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import time
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch

try:
    from ray.tune import Trainable as _TuneTrainable
except ImportError:  # a bare GPU image without Ray (benchmarks/gpu_check.py): the TrainingRuns work, and
    _TuneTrainable = object  # an EpochTrainable is driven by hand (gpu_check's bare_trainable); Tune needs Ray

from core.records import EPOCH, RESUMABLE, test_metrics
from core.task import TaskSpec
# Re-exported (__all__): tasks, tests and benchmarks import these from trainables.base
from trainables.device import CudaUnavailable, MixedPrecision, choose_device, preflight
from trainables.memory import (TrialOutOfMemory, cap_allocator, gpu_share, out_of_memory_line, peak_rss_mb,
                               reset_peak_rss)
from trainables.metrics import classification_metrics, diverged_metrics, regression_metrics
from trainables.state import has_training_state, load_training_state, save_training_state, set_global_generators

__all__ = ["CudaUnavailable", "EpochTrainable", "TaskContractError", "check_evaluation", "MixedPrecision", "TrainingRun", "choose_device", "classification_metrics",
           "diverged_metrics", "evaluate_checkpoint", "preflight", "read_checkpoint", "regression_metrics",
           "seed_everything", "time_epoch"]

# A trial's checkpoint: what scoring needs and nothing else, in formats whose reading runs no
# code (a tampered run folder must not execute anything on --resume or scoring).
WEIGHTS_FILE = "best.safetensors"  # the best-validation weights, fp32, on the CPU
RNG_FILE = "rng.safetensors"  # torch's CPU (and CUDA) generator states at the save
META_FILE = "trial.json"  # epoch, best (the best value of the task's metric so far)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainingRun:
    """One configuration of a task being trained: model, optimizer and data, no Ray.

    Subclasses implement ``train_epoch`` (returns the mean training loss) and either ``predict``
    (a classifier: labels, class probabilities and the mean loss on a split, scored by
    ``classification_metrics``) or ``evaluate`` itself (any other task: a dict with a value for
    each of its TaskSpec's ``metrics``, e.g. ``regression_metrics`` and the loss), and keep their
    torch modules in ``self.model`` and ``self.optimizer``.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    n_train: int  # training examples per epoch

    def __init__(self, config: Mapping[str, Any], data: Any, device: torch.device):
        self.config = config
        self.data = data
        self.device = device

    def train_epoch(self) -> float:
        raise NotImplementedError

    def predict(self, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    def evaluate(self, split: str) -> dict[str, float]:
        y_true, proba, loss = self.predict(split)
        return {**classification_metrics(y_true, proba), "loss": float(loss)}

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if getattr(self, "generator", None) is not None:  # the run's shuffling generator, if it has one
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def release(self) -> None:
        """Drop the model and optimizer so their (GPU) memory can be reused: the references
        go first (collected, cycles included), then PyTorch's cache goes back to the driver."""
        self.model = None
        self.optimizer = None
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()


def _to_cpu(obj):
    """``obj`` (nested dicts, lists, tuples of tensors) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _node_id() -> str | None:
    try:
        import ray
    except ImportError:
        return None
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class EpochTrainable(_TuneTrainable):
    """A Ray Tune Trainable where one ``step()`` is one epoch of a ``TrainingRun``.

    Every step reports ``epoch``, ``val_<name>`` for each of the task's metrics (a
    classification task's: accuracy, f1, auc, loss), ``train_loss``, ``epoch_seconds`` and
    ``best_<metric>`` (the best value of the task's metric so far, in its direction); the trial
    ends itself (``done``) once it has trained ``config[epochs_param]`` epochs. The weights of
    the epoch with the best value of the metric are kept and written with every checkpoint, so
    the test split is scored on exactly the model whose validation score selected it.

    A loss that turns NaN or inf ends the trial at that epoch, reported with the task's
    ``diverged_values`` (a classification task's: accuracy 0, AUC 0.5) rather than NaN, and
    ``diverged`` set.

    Out of GPU memory (trainables.memory): the allocator is held to the trial's share of the card;
    a trial that needs more raises ``TrialOutOfMemory`` where a larger share exists (Tune re-queues
    it once with the whole card), and at the whole card ends as ``out_of_memory``, ranked last.

    ``reset_config`` lets Ray reuse one worker process (and its loaded data) across trials.

    Checkpoints: with ``checkpoint_at_end``, Tune saves one as every trial ends, finished or
    stopped by ASHA, and (for a scheduler that pauses trials, ``config[RESUMABLE]``) at each pause.
    The one at the end holds only what scoring needs (the best-validation weights, the counters and
    the generators' states), about one model's fp32 weights; a pause's adds the whole training state
    (``trainables.state``: model, optimizer, LR scheduler, every generator), about 4x that, and a
    restore from it continues exactly where the trial paused. Restoring reads everything to the CPU
    first. Without a pause's state a retried or resumed trial starts again from epoch 1.

    GPU memory (ray issue 23971): after a save the model and optimizer leave the GPU, so a worker
    Tune caches for reuse holds no tensors of the trial while it waits, nor a CPU copy (DistilBERT's
    is ~0.8 GB): a paused trial comes back from its checkpoint, on whichever worker Tune gives it.
    The worker keeps its CUDA context and the libraries' workspaces until it exits.
    """

    task: ClassVar[TaskSpec]  # the task's declaration: its epochs_param says when a trial is done
    run_cls: ClassVar[type[TrainingRun]]
    load_data: ClassVar[Callable[[Mapping[str, Any]], Any]]
    data_keys: ClassVar[tuple[str, ...]] = ()  # config keys that change the loaded data

    def setup(self, config):
        self._device = self.trial_device()
        self._share = gpu_share(self)
        cap_allocator(self._device, self._share)
        self._data_key = None
        self._data = None
        self._start_guarded(config)

    def _start_guarded(self, config):
        """``_start``, with running out of GPU memory while the model or the data move to the card
        handled as in a step (raised from setup, it ended as a plain error after Ray's retries):
        below the whole card the trial is re-queued with it (TrialOutOfMemory, OutOfMemoryRetry);
        with the whole card its first step ends it as out of memory, one attempt in all. The cache
        is emptied after the except block, once the traceback no longer holds the tensors."""
        self._start_oom = None
        try:
            self._start(config)
            return
        except torch.OutOfMemoryError as exc:
            message = out_of_memory_line(self._share, exc)
        self._run = None
        self._free_device_cache()
        if 0 < self._share < 1:
            raise TrialOutOfMemory(message)
        self._start_oom = message

    def _free_device_cache(self) -> None:
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _start(self, config):
        data_key = tuple(config.get(k) for k in self.data_keys)
        if self._data is None or data_key != self._data_key:
            self._data = type(self).load_data(config)
            self._data_key = data_key
        seed_everything(int(config.get("seed", 0)))
        if self._device.type == "cuda":  # the peak this trial reports is its own, not the worker's so far
            torch.cuda.reset_peak_memory_stats(self._device)
        reset_peak_rss()  # likewise the host memory: a reused worker's earlier trials are not this one's
        self._released = False  # the run gave its model and optimizer up at a checkpoint
        self._done = False  # the last result ended the trial: its checkpoint needs no training state
        self._epoch = 0
        self._best = None  # the best value of the task's metric so far (None: no epoch yet)
        self._best_model = None
        self._run = self.run_cls(config, self._data, self._device)

    def trial_device(self) -> torch.device:
        """Where this trial trains: Ray's assignment (choose_device). A test stands a CPU in for the card."""
        return choose_device()

    def reset_config(self, new_config):
        if self._run is not None:
            self._run.release()
        self._start_guarded(new_config)
        return True

    def step(self):
        if self._start_oom is not None:  # the whole card could not hold the model: the trial ends here
            return self._out_of_memory_result()
        try:
            return self._step()
        except TaskContractError as exc:
            # Code and declaration disagree: every retry would fail the same way, so the trial ends
            # now with its error in the result (Tune retries only raised errors), ranked last.
            self._epoch += 1
            self._done = True
            return {**self._result(float("inf"), diverged_metrics(self.task), None, 0.0, diverged=True),
                    "task_error": str(exc), "done": True}
        except torch.OutOfMemoryError as exc:
            message = out_of_memory_line(self._share, exc)
        self._run.optimizer.zero_grad(set_to_none=True)  # what the failed step held, back to the cache
        self._free_device_cache()  # here, not in the except block, whose traceback held the step's tensors
        if 0 < self._share < 1:  # a larger share exists: Tune re-queues the trial with it (OutOfMemoryRetry)
            raise TrialOutOfMemory(message)
        return self._out_of_memory_result()

    def _out_of_memory_result(self) -> dict:
        """The whole card, and still too little: the trial ends here, ranked last like a diverged one."""
        self._epoch += 1
        result = self._result(float("inf"), diverged_metrics(self.task), None, 0.0, diverged=True)
        self._done = True
        return {**result, "out_of_memory": True, "done": True}

    def _step(self):
        if self._released:  # Tune restores (load_checkpoint) before it trains a checkpointed trial again
            raise RuntimeError(f"{type(self).__name__}: step() after the trial's checkpoint released its model")
        started = time.perf_counter()
        train_loss = self._run.train_epoch()
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - started
        val = self._run.evaluate("val")
        check_metrics(self.task, type(self._run), val)
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - started
        self._epoch += 1
        objective = self.task.objective
        diverged = not (math.isfinite(train_loss) and math.isfinite(val.get("loss", 0.0))
                        and math.isfinite(val[objective.name]))
        if diverged:
            # The task's worst values, not NaN: searchers and ASHA rank this trial last.
            val = diverged_metrics(self.task)
        elif objective.is_better(val[objective.name], self._best):
            self._best = val[objective.name]
            self._best_model = _to_cpu(self._run.model.state_dict())
        result = self._result(train_loss, val, train_seconds, epoch_seconds, diverged=diverged)
        if self.config.get("record_test_curves"):
            # For replay tables only (run_all.py --record-test-curves); never the metric.
            test = self._run.evaluate("test") if not diverged else diverged_metrics(self.task)
            result.update({f"test_{name}": test.get(name) for name in test_metrics(self.task.metrics)})
        if diverged or self._epoch >= int(self.config[self.task.epochs_param]):
            result["done"] = self._done = True
        return result

    def _result(self, train_loss: float, val: dict, train_seconds: float | None, epoch_seconds: float,
                diverged: bool) -> dict:
        """One epoch's report (see the class's docstring)."""
        task, objective = self.task, self.task.objective
        result = {
            EPOCH: self._epoch,
            **{f"val_{name}": val.get(name) for name in task.metrics},
            "train_loss": train_loss if math.isfinite(train_loss) else float("inf"),
            objective.best_column: val[objective.name] if self._best is None else self._best,
            "epoch_seconds": epoch_seconds,  # training and validation
            "samples_per_second": self._run.n_train / train_seconds if train_seconds else None,
            "end_time": time.time(),  # wall clock at the epoch's end, for anytime curves
            "peak_rss_mb": peak_rss_mb(),
            "node_id": _node_id(),  # which machine of a cluster trained it
            "diverged": diverged,
            "gpu_share": self._share,
        }
        if self._device.type == "cuda":
            # this trial's own peak (reset in _start), not the worker's since it started
            result["peak_trial_gpu_mem_mb"] = torch.cuda.max_memory_allocated(self._device) / 2**20
        return result

    def save_checkpoint(self, checkpoint_dir):
        from safetensors.torch import save_file

        if self._released:
            raise RuntimeError(f"{type(self).__name__}: a second checkpoint without training in between")
        # the best-validation weights; a trial that diverged at its first epoch has only the ones it has,
        # and one whose model never fit on the card none
        weights = (self._best_model if self._best_model is not None
                   else {} if self._run is None else _to_cpu(self._run.model.state_dict()))
        save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(checkpoint_dir, WEIGHTS_FILE))
        rng = {"cpu": torch.get_rng_state()}
        if self._device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self._device)
        save_file(rng, os.path.join(checkpoint_dir, RNG_FILE))
        with open(os.path.join(checkpoint_dir, META_FILE), "w") as f:
            json.dump({"epoch": self._epoch, "best": self._best}, f)
        if self.config.get(RESUMABLE) and not self._done:  # a pause: everything the next epoch needs
            save_training_state(checkpoint_dir, self._run.state_dict(), self._device)
        # The trial ends or pauses here (it comes back, if ever, through load_checkpoint): free the device.
        if self._run is not None:
            self._run.release()
        self._released = True

    def load_checkpoint(self, checkpoint):
        path = checkpoint if isinstance(checkpoint, str) else checkpoint.path
        weights, rng, meta = read_checkpoint(path)
        if self._released:
            self._run = self.run_cls(self.config, self._data, self._device)
            self._released = False
        self._epoch = int(meta["epoch"])
        # "best_val_accuracy": checkpoints written before tasks could name their metric
        best = meta.get("best", meta.get("best_val_accuracy"))
        self._best = None if best is None or not math.isfinite(best) else float(best)
        torch.set_rng_state(rng["cpu"])  # a CPU generator takes a CPU state only
        if "cuda" in rng and self._device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self._device)
        if has_training_state(path):  # a pause's: the trial goes on exactly where it stopped
            run_state, generators = load_training_state(path)
            self._run.load_state_dict(run_state)  # copies onto the run's device
            set_global_generators(generators, self._device)
            self._best_model = weights if self._best is not None else None
        else:
            self._run.model.load_state_dict(weights)  # copies onto the run's device
            self._best_model = weights  # stays on the CPU, as the trainable keeps it

    def cleanup(self):
        if self._run is not None:
            self._run.release()
        self._data = None


def read_checkpoint(path: str) -> tuple[dict, dict, dict]:
    """(best weights, generator states, counters) of a trial's checkpoint, all on the CPU;
    safetensors and JSON only, so reading runs no code."""
    from safetensors.torch import load_file

    with open(os.path.join(path, META_FILE)) as f:
        meta = json.load(f)
    return load_file(os.path.join(path, WEIGHTS_FILE), device="cpu"), load_file(os.path.join(path, RNG_FILE)), meta


class TaskContractError(ValueError):
    """The task's code does not do what its TaskSpec declares (an evaluation without a declared metric)."""


def check_metrics(task: TaskSpec, run_cls: type, returned: Mapping[str, float]) -> None:
    """TaskContractError, one line, where an evaluation ``returned`` lacks a metric the task declares."""
    missing = [name for name in task.metrics if name not in returned]
    if missing:
        raise TaskContractError(f"{run_cls.__name__}.evaluate returned {', '.join(sorted(returned)) or 'nothing'}, "
                                f"without {', '.join(missing)} that task {task.name}'s metrics declare")


def check_evaluation(trainable: type[EpochTrainable], config: Mapping[str, Any]) -> None:
    """A task's code against its declaration, once, before any trial: one configuration built on the
    CPU (untrained) and evaluated on the validation split; TaskContractError where a declared metric
    is missing. What a trial would find after Tune's retries, found in seconds. A plain Tune Trainable
    (no TrainingRun) reports what it likes: nothing to check."""
    if not (isinstance(trainable, type) and issubclass(trainable, EpochTrainable)):
        return
    data = trainable.load_data(config)
    seed_everything(int(config.get("seed", 0)))
    run = trainable.run_cls(config, data, torch.device("cpu"))
    try:
        check_metrics(trainable.task, trainable.run_cls, run.evaluate("val"))
    finally:
        run.release()


def time_epoch(trainable: type[EpochTrainable], config: Mapping[str, Any]) -> float:
    """Seconds one epoch of ``config`` takes where this process runs (training and validation, as a
    trial's epoch_seconds; the data loaded and the model built first, not timed)."""
    device = choose_device()
    data = trainable.load_data(config)
    seed_everything(int(config.get("seed", 0)))
    run = trainable.run_cls(config, data, device)
    started = time.perf_counter()
    run.train_epoch()
    run.evaluate("val")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    run.release()
    return seconds


def evaluate_checkpoint(trainable: type[EpochTrainable], config: Mapping[str, Any], checkpoint,
                        split: str = "test") -> dict[str, float]:
    """Score the best-validation weights stored in a trial's checkpoint on ``split``.
    ``checkpoint``: its folder, or Tune's Checkpoint (copied here first where it is remote)."""
    device = choose_device()
    data = trainable.load_data(config)
    seed_everything(int(config.get("seed", 0)))
    run = trainable.run_cls(config, data, device)
    if hasattr(checkpoint, "as_directory"):
        with checkpoint.as_directory() as folder:
            weights, _, _ = read_checkpoint(folder)
    else:
        weights, _, _ = read_checkpoint(checkpoint)
    run.model.load_state_dict(weights)
    del weights
    metrics = run.evaluate(split)
    run.release()
    return metrics
