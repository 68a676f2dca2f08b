"""A failing trial is recorded with its error and the method goes on."""

from __future__ import annotations

import dataclasses

import pytest

import run_all
from core import records
from core.rules import Objective, select_trial
from experiments.plan import Method
from experiments.scoring import summarize_method
from tests.analytic import TASK as ANALYTIC
from tests.tuning import collect, tune

# A failed trial's worker process is replaced (seconds each): keep the grid small.
TASK = dataclasses.replace(ANALYTIC, space={"x": (1, 2, 3, 4), "learning_rate": (1e-3,), "act": ("relu", "tanh"),
                                            "epochs": (2,)})


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


@pytest.mark.slow
def test_a_killed_worker_is_retried_then_recorded_and_the_method_goes_on(ray_session, tmp_path):
    """A trial's worker process SIGKILLed mid-trial (as the kernel's OOM killer ends it): Ray
    retries the trial under --max-failures; past it the trial is `error` with Ray's reason, and
    the other trials of the method complete."""
    marks = tmp_path / "marks"
    marks.mkdir()
    tuned = tune(TASK, "grid", "fifo", 0, tmp_path / "tune", max_failures=1, fixed_config={"kill_x": (2,)})
    trials, _, _ = collect(tuned, TASK, "grid", "fifo", 0)
    killed = [t for t in trials if t["config/x"] == 2]
    assert len(trials) == TASK.grid_size and all(t["status"] == records.FAILED for t in killed)
    assert all("worker process has died" in t["error"] for t in killed), killed
    assert all(t["status"] == records.COMPLETED for t in trials if t["config/x"] != 2)
    # killed once, then retried: the trial completes
    tuned = tune(TASK, "grid", "fifo", 0, tmp_path / "once", max_failures=1,
                 fixed_config={"kill_x": (3,), "kill_marks": str(marks)})
    trials, _, _ = collect(tuned, TASK, "grid", "fifo", 0)
    assert sorted(p.name for p in marks.iterdir()) == ["3"]
    assert all(t["status"] == records.COMPLETED for t in trials)


def test_a_scoring_task_whose_worker_dies_leaves_the_test_columns_empty(ray_session, tmp_path, monkeypatch, capsys):
    """Scoring a pick on the GPU is a Ray task (experiments.scoring); where its worker dies past
    Ray's retry, the method keeps its trials and pick, its test columns stay empty, one line says why."""
    import ray.exceptions

    from experiments import runner
    from experiments.plan import RunPlan

    def dies(plan, result):
        raise ray.exceptions.WorkerCrashedError()  # what ray.get raises once the task's retries are spent

    monkeypatch.setattr(runner, "evaluate_selected", dies)
    plan = RunPlan(task=TASK, num_samples=1, max_concurrent=2, resources={"cpu": 1, "gpu": 0}, fixed_config={},
                   max_failures=0, keep_checkpoints="all")
    outcome = runner.run_method(plan, Method("grid", "fifo", 0), str(tmp_path))
    assert outcome.summary["best_trial_id"] and outcome.summary["test_accuracy"] is None
    assert len(outcome.trials) == TASK.grid_size
    err = capsys.readouterr().err
    assert "grid-fifo-s0: scoring the pick on the test split failed (" in err and "left empty" in err
