"""Checking that a TrainingRun gives its device memory back, without a GPU."""

from __future__ import annotations

import weakref

import torch


def watch_release(monkeypatch, run):
    """Pretend ``run`` is on a GPU; return a weak reference to one of its weights and a list that
    records, each time the CUDA cache is emptied, whether that weight was still reachable (it
    must not be: the cache is emptied to hand the memory back)."""
    run.device = torch.device("cuda")
    weights = weakref.ref(next(run.model.parameters()))
    alive_at_release = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_release.append(weights() is not None))
    return weights, alive_at_release
