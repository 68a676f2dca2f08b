"""What a kill -9 of a run leaves running (Ray's DashboardAgent and RuntimeEnvAgent, which ignore
SIGTERM) is found by the run's Ray session and ended by the next run or --resume; never by name,
never while the session's driver lives. benchmarks/orphans.py reproduces it with a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from experiments.orphans import end_orphans, end_orphans_of_runs

# a stand-in for an orphaned agent: holds a log file of the session open, ignores SIGTERM, and is
# re-parented to init (double fork) as the agents are once their driver is killed
HOLDER = ("import ctypes, os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
          "ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0); f = open(sys.argv[1], 'a'); "
          "open(sys.argv[2], 'w').write(str(os.getpid())); time.sleep(120)")


def _orphan(log, pid_file, name=b"ray::Agent"):
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{HOLDER}" "{log}" "{pid_file}" "{name.decode()}" &'],
                   check=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if pid_file.exists() and pid_file.read_text():
            return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("the stand-in did not start")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # ended: a driver killed with kill -9


@pytest.fixture
def cleanup():
    pids = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def test_a_dead_drivers_session_processes_are_ended_even_if_they_ignore_sigterm(tmp_path, cleanup):
    session = tmp_path / f"session_2026-11-30_09-02-27_632526_{_dead_pid()}"
    (session / "logs").mkdir(parents=True)
    agent = _orphan(session / "logs" / "dashboard_agent.log", tmp_path / "a.pid")
    # same name, another session: never chosen by its name
    bystander = _orphan(tmp_path / "elsewhere.log", tmp_path / "b.pid")
    cleanup += [agent, bystander]
    assert end_orphans(str(session), grace_s=0.5) == [agent]
    assert not psutil.pid_exists(agent) or psutil.Process(agent).status() == psutil.STATUS_ZOMBIE
    assert psutil.Process(bystander).is_running()


def test_a_session_whose_driver_lives_is_left_alone(tmp_path, cleanup):
    session = tmp_path / f"session_2026-11-30_09-02-27_632526_{os.getpid()}"  # this process: alive
    (session / "logs").mkdir(parents=True)
    agent = _orphan(session / "logs" / "raylet.out", tmp_path / "a.pid")
    cleanup.append(agent)
    assert end_orphans(str(session), grace_s=0.5) == []
    assert psutil.Process(agent).is_running()


def test_resume_and_new_runs_end_only_unfinished_runs_orphans(tmp_path, cleanup):
    ended = {}
    for status in ("running", "finished"):
        session = tmp_path / f"session_{status}_{_dead_pid()}"
        (session / "logs").mkdir(parents=True)
        pid = _orphan(session / "logs" / "x.log", tmp_path / f"{status}.pid")
        cleanup.append(pid)
        run = tmp_path / "results" / status
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"status": status, "ray_session_dir": str(session)}))
        ended[status] = pid
    lines = []
    assert end_orphans_of_runs(sorted((tmp_path / "results").iterdir()), echo=lines.append) == 1
    assert len(lines) == 1 and "left by the killed run" in lines[0] and str(ended["running"]) in lines[0]
    assert psutil.Process(ended["finished"]).is_running()  # a finished run's session is not looked at
