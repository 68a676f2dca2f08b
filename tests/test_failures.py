"""A failing trial is recorded with its error and the method goes on."""

from __future__ import annotations

import dataclasses

from core import records
from core.rules import select_trial
from experiments.plan import Method
from experiments.scoring import summarize_method
from tests.analytic import TASK as ANALYTIC
from tests.tuning import collect, tune

# A failed trial's worker process is replaced (seconds each): keep the grid small.
TASK = dataclasses.replace(ANALYTIC, space={"x": (1, 2, 3, 4), "learning_rate": (1e-3,), "act": ("relu", "tanh"),
                                            "epochs": (2,)})

import run_all
from core.rules import Objective


def test_a_trial_that_raises_is_recorded_and_the_run_goes_on(ray_session, tmp_path):
    tuned = tune(TASK, "grid", "fifo", 0, tmp_path, fixed_config={"fail_x": (2,)})
    trials, curves, _ = collect(tuned, TASK, "grid", "fifo", 0)
    failed = [t for t in trials if t["status"] == records.FAILED]
    assert len(trials) == TASK.grid_size
    assert len(failed) == 2  # every configuration with x=2
    assert all(t["config/x"] == 2 and "x=2 is set to fail" in t["error"] and t["epochs"] == 0 for t in failed)
    assert all(t["status"] == records.COMPLETED for t in trials if t["config/x"] != 2)
    selected = select_trial(trials, Objective())
    assert selected["status"] != records.FAILED and selected["config/x"] == 3
    summary = summarize_method(TASK, Method("grid", "fifo", 0), trials, tuned.wall_seconds, {}, selected, 0.0)
    assert summary["n_failed"] == len(failed) and summary["n_trials"] == TASK.grid_size
    assert len(curves) == sum(t["epochs"] for t in trials)


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    spec = run_all.parse_spec(["--task", "breast_cancer", "--data-dir", "data", "--cache-dir", "cache"])
    assert spec.task_options == {"data_dir": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")}
