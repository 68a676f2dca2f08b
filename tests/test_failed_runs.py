"""A run that cannot show anything says so: options a task can check fail before any trial, and
a method whose every trial failed makes the run exit non-zero with one line per failed trial
instead of screens of tracebacks (before: exit 0, ~630 lines of tracebacks, a table of '-')."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import run_all
import trainables
from core import records


def test_a_subset_smaller_than_the_classes_fails_in_one_line_before_anything_is_written(tmp_path, capsys):
    results = tmp_path / "results"
    assert run_all.main(["--task", "cifar10", "--budget", "smoke", "--subset", "7", "--methods", "grid:fifo",
                         "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("lowres-tune: error: --subset 7 is smaller than the 10 classes of cifar10: a stratified subset "
                   "needs at least one example of each class")
    assert not results.exists()


def test_a_method_whose_every_trial_fails_exits_1_with_one_line_per_failed_trial(ray_session, tmp_path, capfd,
                                                                                  monkeypatch):
    monkeypatch.setitem(trainables.TASK_MODULES, "analytic_fail", "tests.failing_task")
    results = tmp_path / "results"
    code = run_all.main(["--task", "analytic_fail", "--methods", "grid:fifo", "--results-dir", str(results),
                         "--max-failures", "1", "--monitor-interval", "0.5"])
    out, err = capfd.readouterr()
    assert code == 1, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err and "Trial task failed" not in err
    failures = [line for line in err.splitlines() if line.startswith("grid-fifo-s0: trial ")]
    assert len(failures) == 4  # 2 trials x (1 retry + the failure for good)
    assert sum("Ray retries it" in line for line in failures) == 2 and sum("failed for good" in line for line in failures) == 2
    assert all("RuntimeError: x=" in line and "is set to fail" in line and "error.txt" in line for line in failures)
    (run_dir,) = (results / "analytic_fail").iterdir()
    assert err.strip().splitlines()[-1] == (
        f"lowres-tune: error: 1 of 1 methods completed no trial (grid:fifo seed 0); each trial's error is in "
        f"{run_dir / 'trials.csv'} and its traceback in the trial's error.txt")
    trials = pd.read_csv(run_dir / "trials.csv")
    assert (trials["status"] == records.FAILED).all() and trials["error"].str.contains("is set to fail").all()
    for line in failures:  # the traceback is where the line says, in the run folder
        path = Path(line.split("(traceback: ")[1].rstrip(")"))
        assert path.is_relative_to(run_dir) and "is set to fail" in path.read_text()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["methods_without_result"] == ["grid-fifo-s0"]


@pytest.mark.slow
def test_a_run_whose_report_crashes_is_marked_failed_not_running(ray_session, tmp_path, monkeypatch):
    """A bug after the methods (here: the report) keeps its traceback, and run.json says the run failed
    and why, instead of "running" forever."""
    import experiments.runner

    def broken(run_dir):
        raise KeyError("test_loss")

    monkeypatch.setattr(experiments.runner, "build", broken)
    results = tmp_path / "results"
    with pytest.raises(KeyError):
        run_all.main(["--task", "breast_cancer", "--budget", "smoke", "--methods", "grid:fifo", "--results-dir",
                      str(results), "--quiet"])
    (run_dir,) = (results / "breast_cancer").iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["failed_because"] == "'test_loss'"
    assert (run_dir / "summary.csv").is_file()  # what the methods wrote is kept
