"""Spawned "trials" for benchmarks/gpu_check.py: processes that train a real TrainingRun on the card at
once, start their timed window together, and report; a trial that dies or hangs ends its check in
seconds with the trial's own error, not after a 600 s wait on a barrier that never fills.

Also the in-memory data and the sizes: full sizes on a card, tiny ones for the CPU rehearsal."""

from __future__ import annotations

import os
import queue
import time

import _common  # noqa: F401  (puts the repository on sys.path)

# GPU_CHECK_INJECT=<part>,<part>/trial: that part raises as it starts; the last trial of that part's
# largest spawn raises before it is ready (tests/test_gpu_check.py shows the check survives both).
INJECT = set(filter(None, os.environ.get("GPU_CHECK_INJECT", "").split(",")))


class TrialFailed(RuntimeError):
    """A spawned trial raised, exited or did not report in time: the check's one line says which."""


def sizes(on_gpu: bool) -> dict:
    if on_gpu:  # CIFAR-10's batch 128 (a middle value) and 32 (its smallest); DistilBERT-base at 32 x 256
        return {"images": 4096, "cifar_batches": (128, 32), "window_s": 4.0, "bert": {}, "bert_batch": 32,
                "tokens": 256, "bert_examples": 128}
    return {"images": 32, "cifar_batches": (32,), "window_s": 0.5, "bert_batch": 4, "tokens": 16, "bert_examples": 8,
            "bert": {"n_layers": 1, "n_heads": 2, "dim": 32, "hidden_dim": 64, "vocab_size": 200,
                     "max_position_embeddings": 64}}


def synthetic_cifar(n: int, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {split: (rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size))
            for split, size in (("train", n), ("val", min(n, 512)), ("test", min(n, 512)))}


def synthetic_tokens(n: int, tokens: int, vocab: int, seed: int = 0) -> dict:
    """The IMDB task's tokenized layout (ids, offsets, labels per split), every review ``tokens`` long."""
    import numpy as np

    rng = np.random.default_rng(seed)
    split = lambda: (rng.integers(1, vocab, n * tokens), np.arange(0, n * tokens + 1, tokens),  # noqa: E731
                     rng.integers(0, 2, n))
    return {"train": split(), "val": split(), "test": split(), "pad_token_id": 0}


def device_of(on_gpu: bool):
    import torch

    return torch.device("cuda", 0) if on_gpu else torch.device("cpu")


def memory_figures(device) -> dict:
    """The allocator's peaks and this process's memory outside it (its CUDA context, measured through
    NVML; None where NVML cannot say), MiB; nothing on the CPU."""
    import torch

    from trainables.memory import context_bytes

    if device.type != "cuda":
        return {}
    context = context_bytes(device)
    return {"allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20),
            "reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20),
            "context_mib": None if context is None else round(context / 2**20)}


def cifar_config(batch: int) -> dict:
    return {"learning_rate": 1e-3, "batch_size": batch, "dropout_rate": 0.2, "seed": 0, "model": "resnet18"}


def bert_config(on_gpu: bool, model_dir: str) -> dict:
    size = sizes(on_gpu)
    return {"model": model_dir, "learning_rate": 5e-5, "batch_size": size["bert_batch"], "num_train_epochs": 1,
            "max_seq_length": size["tokens"], "padding": "max_length", "seed": 0}


# --- what each spawned trial does ------------------------------------------------------------------
def train_window(run, device, window_s: float, start) -> dict:
    """One warm-up epoch (cudnn autotuning, the allocator), ``start()`` (every trial waits for the
    others), then epochs for ``window_s``: samples per second over the window and the memory figures."""
    import torch

    run.train_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    start()
    samples, started = 0, time.perf_counter()
    while time.perf_counter() - started < window_s:
        run.train_epoch()
        samples += run.n_train
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = {"samples_per_s": samples / (time.perf_counter() - started), **memory_figures(device)}
    run.release()
    return out


def cifar_trial(on_gpu: bool, batch: int, start) -> dict:
    from trainables.cifar10 import Cifar10Run

    size, device = sizes(on_gpu), device_of(on_gpu)
    run = Cifar10Run(cifar_config(batch), synthetic_cifar(size["images"]), device)
    return train_window(run, device, size["window_s"], start)


def bert_trial(on_gpu: bool, model_dir: str, start) -> dict:
    from trainables.imdb import ImdbRun

    size, device = sizes(on_gpu), device_of(on_gpu)
    data = synthetic_tokens(size["bert_examples"], size["tokens"], size["bert"].get("vocab_size", 30522))
    run = ImdbRun(bert_config(on_gpu, model_dir), data, device)
    out = train_window(run, device, size["window_s"], start)
    return {**out, "precision": run.precision.name}


def _trial_main(target, k: int, args: tuple, ready, go, results, fail: bool, wait_s: float) -> None:
    def start():
        ready.put((k, "ready"))
        if not go.wait(timeout=wait_s):
            raise TimeoutError(f"no start signal in {wait_s:.0f} s")

    try:
        if fail:
            raise RuntimeError("injected failure (GPU_CHECK_INJECT)")
        results.put((k, target(*args, start)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which ends the check with it
        message = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
        ready.put((k, message))
        results.put((k, message))
        raise


def spawn_trials(target, n: int, args: tuple, timeout_s: float, gpu=None, inject: bool = False
                 ) -> tuple[list[dict], list[float]]:
    """``n`` spawned processes running ``target(*args, start)``; each calls ``start()`` when it is
    ready to be timed and goes on when all are. Their results in order, and the card's utilization
    (%) sampled through NVML over the common window (none without ``gpu``). TrialFailed as soon as
    one raises or exits, or when ``timeout_s`` has passed."""
    import multiprocessing

    # CUDA cannot be forked after it starts; a fork server that imported torch and the trainables but
    # never touched CUDA can fork each trial (a trial starts in a second instead of a fresh import's 5)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "gpu_trials", "trainables.cifar10", "trainables.imdb"])
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    deadline = time.monotonic() + timeout_s
    processes = [context.Process(target=_trial_main, daemon=True,
                                 args=(target, k, args, ready, go, results, inject and k == n - 1, timeout_s))
                 for k in range(n)]
    for p in processes:
        p.start()
    try:
        gather(ready, processes, deadline, "ready")
        go.set()
        window = sizes(gpu is not None)["window_s"]
        util = sample_util(gpu, window) if gpu is not None else []
        return [out for _, out in sorted(gather(results, processes, deadline, "done"))], util
    finally:
        for p in processes:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def gather(messages, processes, deadline: float, stage: str) -> list[tuple[int, dict]]:
    """One message from every process, polling their liveness: the first error, a process that
    exited without a word, or the deadline ends it."""
    got: dict[int, object] = {}
    gone: dict[int, float] = {}  # when a process was first seen exited: its last message may still be in the pipe
    n = len(processes)
    while len(got) < n:
        try:
            k, message = messages.get(timeout=0.5)
        except queue.Empty:
            for k, p in enumerate(processes):
                if k not in got and p.exitcode is not None and time.monotonic() - gone.setdefault(k, time.monotonic()) > 2:
                    raise TrialFailed(f"trial {k + 1} of {n} exited (code {p.exitcode}) before it was {stage}")
            if time.monotonic() > deadline:
                raise TrialFailed(f"trial(s) {[k + 1 for k in range(n) if k not in got]} of {n} not {stage} in time")
            continue
        if isinstance(message, dict) and "error" in message:
            raise TrialFailed(f"trial {k + 1} of {n} failed before it was {stage}: {message['error']}")
        got[k] = message
    return list(got.items())


def sample_util(gpu, seconds: float) -> list[float]:
    from experiments.gpus import GpuSampler

    sampler, values, end = GpuSampler(gpu), [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            util = sampler.sample()[0]
            if util is not None:
                values.append(util)
            time.sleep(0.2)
    finally:
        sampler.close()
    return values
