"""The run folder's files: their column names and the names of what a trial reports (the one
place they are spelled), and atomic writers (a temporary file in the same folder, then
``os.replace``), so a crash or a Ctrl-C never leaves a half-written result file behind."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

# What every trial reports once per epoch (EpochTrainable; the replay reports the same): the epoch,
# and val_<name> for each metric the task's evaluation returns (TaskSpec.metrics). A classification
# task's are CLASSIFICATION_METRICS; its test split reports them all, the loss too (a task may select by it).
EPOCH = "epoch"  # the resource ASHA allocates: epochs trained
# A config key the runner sets for a scheduler that pauses trials (searchers.PAUSING): a checkpoint taken
# before a trial's last epoch then holds its whole training state (trainables.state), to be resumed from.
RESUMABLE = "resumable_checkpoints"
STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"  # that state's files, next to the weights
STATE_FILES = (STATE_TENSORS, STATE_JSON)
CLASSIFICATION_METRICS = ("accuracy", "f1", "auc", "loss")


def test_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """The metrics a task reports on the test split: all it evaluates, as on the validation split
    (the loss too: a task selected by val_loss has its pick scored on test_loss)."""
    return tuple(metrics)


def test_columns(metrics: Iterable[str]) -> tuple[str, ...]:
    """Their columns: test_<name>."""
    return tuple(f"test_{m}" for m in test_metrics(metrics))


# Every row of every table carries the method's identity, so analysis groups by columns,
# never by parsing folder names.
METHOD_COLUMNS = ("task", "searcher", "scheduler", "seed")


def trial_columns(space_names: Iterable[str], metric: str) -> tuple[str, ...]:
    """trials.csv: best_<metric> and final_<metric> are the trial's best and last value of the
    task's metric (best in its direction). gpu_share: the share of the card the trial's last
    attempt held; oom_attempts: its attempts that ran out of GPU memory."""
    return (METHOD_COLUMNS + ("trial_id", "status") + tuple(f"config/{name}" for name in space_names)
            + ("epochs", f"best_{metric}", f"final_{metric}", "train_seconds", "samples_per_second", "peak_rss_mb",
               "peak_trial_gpu_mem_mb", "gpu_share", "oom_attempts", "node", "error"))


def curve_columns(metrics: Iterable[str]) -> tuple[str, ...]:
    """curves.csv: one row per epoch. test_* are filled only in runs made with --record-test-curves
    (tables for the replay benchmark); searchers and schedulers never see them."""
    metrics = tuple(metrics)
    return (METHOD_COLUMNS + ("trial_id", "epoch") + tuple(f"val_{m}" for m in metrics)
            + ("epoch_seconds", "wall_seconds") + test_columns(metrics))


# GPU memory, two clearly different things: peak_trial_gpu_mem_mb is PyTorch's peak allocation by
# one trial (max_memory_allocated, reset as each trial starts; in a summary, the largest trial's);
# peak_card_gpu_mem_mb and resources.csv's gpu_mem_mb are the whole card's used memory (NVML:
# every process on it, CUDA contexts and caches included).
def summary_columns(metric: str, metrics: Iterable[str]) -> tuple[str, ...]:
    """summary.csv: one row per method and seed; best_<metric> is its pick's best validation value,
    test_* the pick's scores on the test split. compute_spent: the method's compute as --time-budget
    counts it (experiments.budget: epochs' seconds x GPU share on a GPU, else trial-seconds);
    compute_budget: the budget it was held to (empty without --time-budget)."""
    return METHOD_COLUMNS + (
        "n_trials", "n_failed", "n_oom", "n_evicted", "n_repeats", "epochs_trained", f"best_{metric}",
        *test_columns(metrics),
        "wall_seconds", "trial_seconds", "gpu_seconds", "compute_spent", "compute_budget", "mean_gpu_util",
        "peak_trial_gpu_mem_mb",
        "peak_card_gpu_mem_mb", "peak_rss_mb", "best_trial_id", "best_config")


# resources.csv: the resource monitor's samples, tagged with the method running.
# node: the Ray node the row measures; gpu: the card's index on it (a row per GPU on a cluster;
# the pinned card's index on one machine), empty in rows that measure processes only.
RESOURCE_COLUMNS = ("time", "wall_seconds", "task", "searcher", "scheduler", "seed", "node", "gpu", "gpu_util",
                    "gpu_mem_mb", "cpu_percent", "rss_mb", "n_processes")

# Trial statuses written to trials.csv.
COMPLETED = "completed"  # trained all of its own epochs
STOPPED = "stopped"  # stopped early by the scheduler (ASHA)
DIVERGED = "diverged"  # its loss became NaN or inf; reported as the worst value
FAILED = "error"  # raised; the error is in the `error` column
EVICTED = "evicted"  # paused at a rung, then stopped for good: the paused states took their disk budget
OUT_OF_MEMORY = "oom"  # out of GPU memory, alone on the card or with no retry left (core.rules.oom_retry_share)


def iso_time(seconds: float) -> str:
    """A Unix time as run.json writes every time: ISO 8601 in UTC, to the microsecond (a method's
    start is the origin of its curves' wall_seconds)."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unix_time(value) -> float:
    """The inverse of ``iso_time``; a number as it is (run.json files that wrote Unix times)."""
    if isinstance(value, (int, float)):
        return float(value)
    form = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"  # the latter: to the second
    return datetime.strptime(value, form).replace(tzinfo=timezone.utc).timestamp()


_UMASK = os.umask(0)
os.umask(_UMASK)  # the process's umask (read once: os.umask can only be read by setting it)


def _atomic(path: Path, write, binary: bool = False, suffix: str = ".tmp") -> None:
    """``write(f)`` into a temporary file next to ``path``, synced, then renamed over it: readers
    see the old file or the new one, never half of one (a crash, a Ctrl-C, a full disk)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_atomic(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text))


def write_json(path: Path, obj) -> None:
    _write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, text)


def write_figure(fig, path: Path, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG, atomically like every other file (a full disk leaves the last
    whole plot, never half of one)."""
    _atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"), binary=True, suffix=".png")


# errno values that mean "the storage refused the write" (not a bug of ours): a run stops on them
# in one line, its files whole, and --resume continues once there is room again
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG})


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def read_csv_rows(path: Path) -> list[dict]:
    """A table's rows exactly as written (strings), or none where the file is missing."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN: an empty cell, read back as NaN
        return ""
    return value


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[Mapping]) -> None:
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    _write_atomic(path, buf.getvalue())
