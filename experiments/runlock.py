"""One process at a time in a run folder: a run, or a --resume of it, holds an exclusive lock on
``<run>/.lock`` (flock, released by the kernel when the process ends, however it ends), so a
second --resume of the same folder refuses in one line before writing anything, instead of two
processes writing the same tables and Tune folders."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"
_held: dict[str, int] = {}  # run folder -> the open lock file's descriptor


class RunLocked(RuntimeError):
    """Another process holds the run folder."""


def acquire(run_dir: Path) -> None:
    key = str(Path(run_dir).absolute())
    if key in _held:
        return
    fd = os.open(Path(key) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunLocked(f"{key} is in use by another process (pid {holder}): wait for it to end") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[key] = fd


def release(run_dir: Path) -> None:
    fd = _held.pop(str(Path(run_dir).absolute()), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
