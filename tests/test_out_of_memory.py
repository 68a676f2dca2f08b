"""A trial out of GPU memory: re-queued once with the whole card, never with the share it failed
at; out of memory alone on the card, it ends as ``oom`` (ranked last) and is not retried. The
session's Ray declares one GPU (conftest), so Ray places each attempt by its share as on a card."""

from __future__ import annotations

import pytest

from core.rules import is_out_of_memory, oom_retry_share
from experiments.plan import Method
from experiments.scoring import summarize_method
from tests.oom_task import TASK
from tests.tuning import collect
from tests.tuning import tune as tune_one

SHARED = {"cpu": 0.5, "gpu": 0.25}


def test_the_retry_share_is_the_whole_card_once():
    assert oom_retry_share(0.25) == 1.0 and oom_retry_share(0.5) == 1.0
    assert oom_retry_share(1.0) is None and oom_retry_share(0.0) is None  # never the share it failed at
    assert is_out_of_memory("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(RuntimeError("TrialOutOfMemory: out of GPU memory at 0.25 of the card"))
    assert not is_out_of_memory(RuntimeError("x=1 is set to fail"))


def test_an_out_of_memory_trial_gets_the_whole_card_once_and_never_the_same_share(ray_session, tmp_path):
    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path, max_concurrent=2, resources=SHARED, max_failures=2)
    trials, _, _ = collect(tuned, TASK, "grid", "fifo", 0)
    by_need = {t["config/needs"]: t for t in trials}
    fits = by_need[0.1]  # fits its quarter: trained there, no retry
    assert (fits["status"], fits["gpu_share"], fits["oom_attempts"], fits["epochs"]) == ("completed", 0.25, 0, 2)
    half = by_need[0.5]  # out of memory at 0.25, then trained alone on the card
    assert (half["status"], half["gpu_share"], half["oom_attempts"], half["epochs"], half["error"]) == \
        ("completed", 1.0, 1, 2, "")
    too_big = by_need[2.0]  # out of memory at 0.25 and alone: two attempts, not max_failures + 1 = 3
    assert (too_big["status"], too_big["gpu_share"], too_big["oom_attempts"], too_big["epochs"]) == ("oom", 1.0, 2, 1)
    assert too_big["best_val_accuracy"] == 0.0  # ranked last (the task's diverged value), never picked
    summary = summarize_method(TASK, Method("grid", "fifo", 0), trials, tuned.wall_seconds, {}, half, 0.25)
    assert summary["n_oom"] == 1 and summary["n_failed"] == 0
    # GPU-seconds follow each trial's own share
    assert summary["gpu_seconds"] == pytest.approx(sum(t["train_seconds"] * t["gpu_share"] for t in trials))


def test_without_retries_an_out_of_memory_trial_says_how_to_pack_fewer(ray_session, tmp_path):
    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path, max_concurrent=2, resources=SHARED, max_failures=0)
    trials, _, _ = collect(tuned, TASK, "grid", "fifo", 0)
    half = next(t for t in trials if t["config/needs"] == 0.5)
    assert (half["status"], half["gpu_share"], half["oom_attempts"]) == ("oom", 0.25, 1)
    assert "out of GPU memory at 0.25 of the card" in half["error"]
    assert "--max-concurrent" in half["error"] and "--gpus-per-trial" in half["error"]


@pytest.mark.slow
def test_out_of_memory_while_the_model_moves_to_the_card_is_handled_like_one_in_a_step(ray_session, tmp_path):
    """Raised in setup (the model or the data moving to the card), not in step(): below the whole card the
    trial is re-queued with it; with the whole card it ends as oom after that one attempt, never an error
    after Ray's retries."""
    at_init = {"at_init": True}
    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path / "shared", max_concurrent=2, resources=SHARED,
                     max_failures=2, fixed_config=at_init)
    by_need = {t["config/needs"]: t for t in collect(tuned, TASK, "grid", "fifo", 0)[0]}
    assert (by_need[0.1]["status"], by_need[0.1]["oom_attempts"]) == ("completed", 0)
    assert (by_need[0.5]["status"], by_need[0.5]["gpu_share"], by_need[0.5]["oom_attempts"]) == ("completed", 1.0, 1)
    assert (by_need[2.0]["status"], by_need[2.0]["gpu_share"], by_need[2.0]["oom_attempts"]) == ("oom", 1.0, 2)
    whole = {"cpu": 0.5, "gpu": 1.0}
    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path / "whole", max_concurrent=1, resources=whole, max_failures=2,
                     fixed_config=at_init)
    too_big = next(t for t in collect(tuned, TASK, "grid", "fifo", 0)[0] if t["config/needs"] == 2.0)
    assert (too_big["status"], too_big["oom_attempts"], too_big["epochs"], too_big["error"]) == ("oom", 1, 1, "")



def test_the_allocator_cap_leaves_room_for_each_process_cuda_context(monkeypatch):
    """set_per_process_memory_fraction caps PyTorch's cache only: four trials at 0.25 of an 80 GB card, each
    with a 0.5 GB context outside the cap, would hold 82 GB. The cap is the share less the context, so the
    four hold the card; unmeasured, the declared context is taken; a share too small to hold one keeps half."""
    import types

    from trainables import memory

    card = 80 * 2**30
    set_to = []
    fake_cuda = types.SimpleNamespace(
        get_device_properties=lambda device: types.SimpleNamespace(total_memory=card, uuid="x"),
        set_per_process_memory_fraction=lambda fraction, device: set_to.append(fraction),
        memory_reserved=lambda device: 0)
    monkeypatch.setattr(memory, "torch", types.SimpleNamespace(cuda=fake_cuda, zeros=lambda *a, **k: None))
    cuda = types.SimpleNamespace(type="cuda")
    monkeypatch.setattr(memory, "context_bytes", lambda device: 0.5 * 2**30)
    fraction = memory.cap_allocator(cuda, 0.25)
    assert fraction == set_to[-1] == pytest.approx(0.25 - 0.5 / 80)
    assert 4 * (fraction * card + 0.5 * 2**30) == pytest.approx(card)  # four trials, their contexts: the card
    monkeypatch.setattr(memory, "context_bytes", lambda device: None)  # NVML cannot say
    assert memory.cap_allocator(cuda, 0.25) == pytest.approx(0.25 - memory.DEFAULT_CONTEXT_MB / (80 * 1024))
    assert memory.allocator_fraction(0.01, 2**30, card) == 0.005  # 0.8 GB share, 1 GB context: half to PyTorch
    assert memory.cap_allocator(types.SimpleNamespace(type="cpu"), 0.25) is None
    assert memory.cap_allocator(cuda, 1.0) is None  # the whole card: nothing to share


def test_without_nvml_the_context_is_not_measured(monkeypatch):
    import builtins

    import torch

    from trainables import memory

    real_import = builtins.__import__

    def no_nvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("no NVML here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nvml)
    assert memory.context_bytes(torch.device("cpu")) is None
