"""Reproduce what ``kill -9`` of a run's driver leaves running, and check that ``--resume`` ends it.

    python benchmarks/orphans.py

Starts a Breast Cancer smoke run, kills its driver alone with SIGKILL once a trial runs (not the
process group: a crashed or OOM-killed driver), then lists the processes that still hold files
of the run's Ray session folder (run.json's ``ray_session_dir``), by pid and name, with their
resident memory. Then ``--resume`` runs and the same list is printed again: the target is none
left (before experiments/orphans.py, Ray's DashboardAgent and RuntimeEnvAgent, ~90 MB each,
stayed and ignored SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.orphans import session_processes  # noqa: E402


def _describe(processes) -> str:
    rows = []
    for p in processes:
        try:
            rows.append(f"{p.pid} {p.name()} {p.memory_info().rss / 2**20:.0f} MB")
        except Exception:  # ended meanwhile
            continue
    return "; ".join(rows) or "none"


def main() -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--task", "breast_cancer", "--budget",
                                   "smoke", "--methods", "grid:fifo,random:fifo", "--results-dir", str(results)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        session = None
        while time.time() < deadline and driver.poll() is None:
            runs = list((results / "breast_cancer").glob("*/run.json"))
            if runs and list(runs[0].parent.glob("tune/*/trial_*")):
                session = json.loads(runs[0].read_text()).get("ray_session_dir")
                break
            time.sleep(0.2)
        if session is None:
            print("never caught a trial running (or run.json records no ray_session_dir)")
            return 1
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        time.sleep(5)  # what dies with the driver has died by now
        left = session_processes(session)
        print(f"killed driver {driver.pid}; session {Path(session).name}")
        print(f"left running after kill -9: {len(left)}: {_describe(left)}")
        run_dir = runs[0].parent
        resumed = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(run_dir)],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        after = session_processes(session)
        print(f"--resume exit {resumed.returncode}; "
              + " ".join(line for line in resumed.stdout.splitlines() if line.startswith("ended ")))
        print(f"left running after --resume: {len(after)}: {_describe(after)}")
        for p in after:  # leave the machine clean whatever happened
            try:
                p.kill()
            except Exception:
                pass
        return 0 if not after else 1


if __name__ == "__main__":
    sys.exit(main())
