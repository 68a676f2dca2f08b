"""Ray processes a killed run left behind, found by the run's own Ray session and ended.

After ``kill -9`` of a run's driver, Ray's ``DashboardAgent`` and ``RuntimeEnvAgent`` (~90 MB
each) outlive it, re-parented to init, and ignore SIGTERM. Their command lines are rewritten
(``ray::DashboardAgent``), so they are recognized by what they hold open: the log files of the
run's session folder (``/tmp/ray/session_<time>_<driver pid>``), which ``run.json`` records as
``ray_session_dir`` when the run starts its own Ray. A process is never chosen by its name, and
a session is left alone while the driver that started it is alive (the pid Ray puts at the end
of the session's name) or where the run joined a cluster (no session recorded: not ours).
``--resume`` ends its own run's orphans; a new run ends those of earlier runs in the same
results folder that are not running any more.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

RUNNING_STATUSES = ("running", "interrupted")  # runs whose Ray may have been killed with them


def own_session_dir() -> str | None:
    """The session folder of the Ray instance this process started (None if it joined one)."""
    try:
        import ray

        node = ray._private.worker._global_node  # Ray has no public accessor for the session folder
        return str(node.get_session_dir_path()) if node is not None and node.head else None
    except Exception:  # an older or newer Ray without it: nothing recorded, nothing ended later
        return None


def _driver_alive(session_dir: str) -> bool:
    """Whether the process that started the session runs (its pid ends the session's name)."""
    import psutil

    match = re.search(r"_(\d+)$", Path(session_dir).name)
    if not match:
        return True  # not a name we understand: assume alive, end nothing
    pid = int(match.group(1))
    if not psutil.pid_exists(pid):
        return False
    try:  # the pid may have been reused since: a process younger than the session is another one
        return psutil.Process(pid).create_time() <= Path(session_dir).stat().st_mtime + 1
    except (psutil.Error, OSError):
        return False


def session_processes(session_dir: str) -> list:
    """Processes (not this one) holding a file open inside ``session_dir``."""
    import psutil

    root = os.path.realpath(session_dir) + os.sep
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if any(os.path.realpath(f.path).startswith(root) for f in process.open_files()):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def end_orphans(session_dir: str | None, grace_s: float = 3.0) -> list[int]:
    """End what is left of a dead driver's Ray session: SIGTERM, then SIGKILL after ``grace_s``
    (the agents ignore SIGTERM). Returns the pids ended; none while the driver is alive."""
    import psutil

    if not session_dir or not Path(session_dir).is_dir() or _driver_alive(session_dir):
        return []
    processes = session_processes(session_dir)
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in processes]


def end_orphans_of_runs(folders, echo=print) -> int:
    """``end_orphans`` for each run folder whose run.json records a Ray session and says it did
    not finish; one line per run where something was ended. Returns how many processes ended."""
    ended = 0
    for folder in folders:
        try:
            info = json.loads((Path(folder) / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if info.get("status") not in RUNNING_STATUSES or not info.get("ray_session_dir"):
            continue
        pids = end_orphans(info["ray_session_dir"])
        if pids:
            echo(f"ended {len(pids)} Ray process(es) left by the killed run {folder} (its session "
                 f"{Path(info['ray_session_dir']).name}: pids {', '.join(map(str, pids))})")
            ended += len(pids)
    return ended


def earlier_runs(results_dir: Path, task: str, newer_than_s: float = 7 * 24 * 3600) -> list[Path]:
    """Run folders of ``task`` under ``results_dir`` touched in the last week (older runs' Ray
    processes, if any, are not looked for: the scan reads each run.json)."""
    parent = Path(results_dir) / task
    if not parent.is_dir():
        return []
    now = time.time()
    return [p for p in parent.iterdir() if (p / "run.json").is_file() and now - p.stat().st_mtime < newer_than_s]
