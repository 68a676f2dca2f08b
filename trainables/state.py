"""A paused trial's training state on disk, in formats whose reading runs no code.

A pausing scheduler (``searchers.promotion``) stops a trial at a rung and may bring it back much
later, on another worker (Tune reuses workers across trials), so everything the next epoch
depends on is written: the model, the optimizer and LR scheduler (their ``state_dict``s, which
mix tensors, numbers, tuples and int-keyed dicts), the run's shuffling generator, and every
global generator a training step draws from (torch's CPU and CUDA, Python's, NumPy's). A pause
falls between epochs, so the generators' states are the data order's position.

``torch.save`` would pickle: a tampered run folder could then execute code on ``--resume``. So
the tensors go to ``state.safetensors`` and the rest to ``state.json``, where each tensor is a
``{"tensor": key}`` leaf and each container says what it was (a dict keeps int keys, a tuple stays
a tuple: ``Optimizer.load_state_dict`` compares them).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import numpy as np
import torch

from core.records import STATE_FILES, STATE_JSON, STATE_TENSORS  # noqa: F401 - STATE_FILES: for importers


def flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """``obj`` as JSON, its tensors moved (CPU copies) into ``tensors`` under unique keys."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"tensor": path}
    if isinstance(obj, np.ndarray):  # NumPy's generator state: uint32, which safetensors may not take
        tensors[path] = torch.from_numpy(obj.astype(np.int64))
        return {"ndarray": [path, str(obj.dtype)]}
    if isinstance(obj, dict):
        if not all(isinstance(k, (int, str)) for k in obj):
            raise TypeError("a training state's dict has a key that is neither int nor str")
        return {"dict": [[k, flatten(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a training state holds a {type(obj).__name__}, which cannot be written without pickling")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """What ``flatten`` wrote, back; tensors stay on the CPU (load_state_dict moves them)."""
    if not isinstance(obj, dict):
        return obj
    (kind, value), = obj.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "ndarray":
        key, dtype = value
        return tensors[key].numpy().astype(dtype)
    if kind == "dict":
        return {k: unflatten(v, tensors) for k, v in value}
    items = [unflatten(v, tensors) for v in value]
    return tuple(items) if kind == "tuple" else items


def global_generators(device: torch.device) -> dict:
    """Every global generator's state a training step may draw from."""
    states = {"torch_cpu": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_global_generators(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch_cpu"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(states["numpy"])
    if "torch_cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["torch_cuda"], device)


def save_training_state(folder: str, run_state: dict, device: torch.device) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten({"run": run_state, "generators": global_generators(device)}, tensors)
    save_file(tensors, os.path.join(folder, STATE_TENSORS))
    with open(os.path.join(folder, STATE_JSON), "w") as f:
        json.dump(skeleton, f)


def has_training_state(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in STATE_FILES)


def load_training_state(folder: str) -> tuple[dict, dict]:
    """(the run's state_dict, the global generators' states), all on the CPU."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, STATE_JSON)) as f:
        skeleton = json.load(f)
    state = unflatten(skeleton, load_file(os.path.join(folder, STATE_TENSORS), device="cpu"))
    return state["run"], state["generators"]
