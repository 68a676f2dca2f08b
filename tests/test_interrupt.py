"""Ctrl-C: the first stops the whole run and leaves it resumable (exit 130, one line saying how to
continue); a second stops at once. Before, Ray's handler ended only the method in progress, the
run went on with the next methods, exited 0 and called itself finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from core import records
from experiments.interrupt import DISABLE_RAY_HANDLER, Interrupted, InterruptGuard
from experiments.tune_adapter import trial_statuses
from tests.conftest import ROOT


def _run_all(args, log):
    return subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_run_resumably_and_resume_finishes_it(tmp_path):
    results = tmp_path / "results"
    methods = [("grid", "fifo"), ("random", "fifo"), ("bayesopt", "asha")]
    args = ["--task", "breast_cancer", "--budget", "smoke", "--methods", ",".join(f"{s}:{c}" for s, c in methods),
            "--results-dir", str(results), "--monitor-interval", "0.2"]
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        process = _run_all(args, log)
        deadline, sent = time.time() + 300, None
        while time.time() < deadline and process.poll() is None:
            folders = list((results / "breast_cancer").glob("*/tune/random-fifo-s0"))
            states = trial_statuses(folders[0]) if folders else {}
            if any(s == "TERMINATED" for s in states.values()) and any(s != "TERMINATED" for s in states.values()):
                os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
                sent = states
                break
            time.sleep(0.05)
        code = process.wait(timeout=120)
    output = log_path.read_text()
    assert sent is not None, "never caught mid-method: " + output[-2000:]
    (run_dir,) = (results / "breast_cancer").iterdir()
    assert code == 130, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("run_all.py: interrupted; 1 of 3 methods finished. Continue with: python run_all.py "
                           "--resume "), output[-3000:]
    assert "Traceback" not in output and "Tuner.restore" not in output
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert list(pd.read_csv(run_dir / "summary.csv")["searcher"]) == ["grid"]  # the interrupted method is not recorded
    assert not (run_dir / "tune" / "bayesopt-asha-s0").exists()  # ... and no later method started

    resumed = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(run_dir), "--quiet"], check=False,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    # --quiet is display only, so --resume takes it: the table alone (header, rule, a row per method)
    assert len(resumed.stdout.strip().splitlines()) == 2 + len(methods), resumed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(zip(summary["searcher"], summary["scheduler"])) == methods
    trials = pd.read_csv(run_dir / "trials.csv")
    interrupted = trials[trials["searcher"] == "random"]
    assert len(interrupted) == int(summary.loc[summary["searcher"] == "random", "n_trials"].iloc[0]) >= len(sent)
    assert (interrupted["status"] == records.COMPLETED).all() and (interrupted["epochs"] > 0).all()


@pytest.fixture
def guard():
    with InterruptGuard(notice=lambda line: None) as g:
        yield g


def test_the_first_ctrl_c_asks_tune_to_stop_gracefully_and_the_second_stops_at_once(guard, monkeypatch):
    assert os.environ[DISABLE_RAY_HANDLER] == "1"  # Ray's own handler would end only the method in progress
    asked = []

    def signal_interrupt_tune_run(signum, frame):  # the name of Tune's handler, which the guard looks for
        asked.append(signum)

    previous = signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
    try:
        guard.check()  # nothing pressed yet
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert guard.interrupted and len(asked) == 1
        with pytest.raises(Interrupted):
            guard.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_the_guard_restores_the_handler_and_the_environment():
    before = signal.getsignal(signal.SIGINT)
    had = os.environ.pop(DISABLE_RAY_HANDLER, None)
    try:
        with InterruptGuard(notice=lambda line: None):
            assert signal.getsignal(signal.SIGINT) is not before
        assert signal.getsignal(signal.SIGINT) is before and DISABLE_RAY_HANDLER not in os.environ
    finally:
        if had is not None:
            os.environ[DISABLE_RAY_HANDLER] = had
