"""A user's own task: from a file or a module, with a metric that is minimized (the diabetes
example of docs/your-own-task.md, end to end), the Python API, and the one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_all
from core.rules import Objective, best_epochs, select_trial

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "trainables" / "examples" / "diabetes_task.py"  # what `lowres-tune example diabetes` writes
RMSE = Objective("val_rmse", "min")


# --- the rules in the other direction ------------------------------------------------------------
def test_a_min_metric_keeps_the_lowest_epoch_and_picks_the_lowest_trial():
    assert best_epochs([5.0, 3.0, 3.0, 4.0], RMSE) == [1, 2, 2, 2]  # the first of equal bests is kept
    assert best_epochs([0.5, 0.7, 0.7], Objective()) == [1, 2, 2]
    rows = [{"status": "completed", "best_val_rmse": 3.0, "epochs": 2, "trial_id": "a"},
            {"status": "completed", "best_val_rmse": 2.5, "epochs": 1, "trial_id": "b"},
            {"status": "error", "best_val_rmse": 1.0, "epochs": 1, "trial_id": "failed"},
            {"status": "completed", "best_val_rmse": 2.5, "epochs": 4, "trial_id": "c"}]
    assert select_trial(rows, RMSE)["trial_id"] == "c"  # lowest, then trained longest; never a failed one
    assert RMSE.regret(2.0, 2.5) == pytest.approx(0.5) and Objective().regret(0.9, 0.85) == pytest.approx(5.0)
    assert (RMSE.best_column, RMSE.test_column, RMSE.regret_unit) == ("best_val_rmse", "test_rmse", "rmse")


def test_a_task_whose_metric_is_not_among_what_it_evaluates_is_refused():
    from core.task import TaskSpec

    with pytest.raises(ValueError, match="metric 'val_rmse' is not val_<one of its metrics>"):
        TaskSpec(name="x", space={"num_epochs": (1,)}, metric="val_rmse", mode="min")
    with pytest.raises(ValueError, match="diverged_values needs a finite 'rmse'"):
        TaskSpec(name="x", trainable="m:C", space={"num_epochs": (1,)}, metric="val_rmse", mode="min",
                 metrics=("rmse", "loss"))


# --- the worked example, as a user runs it -------------------------------------------------------
@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    """`lowres-tune --task diabetes_task.py --budget smoke` from a folder outside the clone
    (a process of its own: its own Ray, as a user's)."""
    folder = tmp_path_factory.mktemp("user")
    command = [sys.executable, "-c", "import sys, run_all; sys.exit(run_all.main())", "--task", str(EXAMPLE),
               "--budget", "smoke", "--methods", "grid:fifo,random:asha,bayesopt:asha", "--record-test-curves",
               "--results-dir", "results", "--max-concurrent", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (folder / "results" / "diabetes").iterdir()
    return run_dir


@pytest.mark.slow
def test_the_diabetes_example_is_tuned_for_the_lowest_rmse(diabetes_run):
    from analysis import load_run

    run = load_run(diabetes_run)  # the README's pandas analysis
    assert run.task == "diabetes" and run.objective == RMSE and run.metrics == ("rmse", "mae", "loss")
    summary, trials, curves = run.summary, run.trials, run.curves
    assert list(summary.columns[summary.columns.str.startswith(("best_val", "test_"))]) == [
        "best_val_rmse", "test_rmse", "test_mae", "test_loss"]  # a regression's: RMSE and MAE, not accuracy or AUC
    assert {"val_rmse", "val_mae", "val_loss", "test_rmse", "test_mae"} <= set(curves.columns)
    assert "val_accuracy" not in curves.columns and "best_val_accuracy" not in trials.columns
    for _, method in summary.iterrows():
        mine = trials[(trials["searcher"] == method["searcher"]) & (trials["scheduler"] == method["scheduler"])]
        # each trial's best is its lowest epoch, and the method's pick the lowest trial
        for _, trial in mine.iterrows():
            reported = curves[curves["trial_id"] == trial["trial_id"]]["val_rmse"]
            assert trial["best_val_rmse"] == pytest.approx(reported.min())
        assert method["best_val_rmse"] == pytest.approx(mine["best_val_rmse"].min())
        assert 20 < method["test_rmse"] < 200 and method["test_mae"] <= method["test_rmse"]  # target units
    # the regret to the grid is in RMSE units and never negative for the grid's own seed
    report = (diabetes_run / "summary.md").read_text()
    assert "val_regret_rmse" in report and "minimized" in report and "accuracy" not in report.split("##")[0]
    assert json.loads((diabetes_run / "run.json").read_text())["spec"]["task"] == str(EXAMPLE)


@pytest.mark.slow
def test_the_diabetes_grid_replays_with_regret_in_rmse(diabetes_run, tmp_path):
    from experiments import replay

    out = tmp_path / "replay"
    assert replay.main([str(diabetes_run), "--seeds", "3", "--methods", "random:fifo,random:asha,bayesopt:asha",
                        "--out", str(out), "--workers", "1"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert "regret_rmse_at_25pct_median" in summary.columns and "test_rmse_median" in summary.columns
    regrets = summary[[c for c in summary.columns if c.startswith("regret_rmse_at_")]].to_numpy()
    assert np.all(regrets[np.isfinite(regrets)] >= -1e-9)  # in the minimizing direction: never below the optimum
    table = replay.load_table(diabetes_run)
    assert table.optimum == pytest.approx(pd.read_csv(diabetes_run / "trials.csv").query(
        "searcher == 'grid'")["best_val_rmse"].min())


# --- a task from a module, and the Python API ----------------------------------------------------
def test_a_task_module_runs_through_the_python_api(ray_session, tmp_path, monkeypatch):
    """`compare("my_tasks.regression", ...)` from the user's folder; Ray was started before the task
    was known (the session's), so its classes reach the workers by value."""
    from experiments import compare

    package = tmp_path / "my_tasks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, package / "regression.py")
    monkeypatch.chdir(tmp_path)
    # gpus_per_trial=0: the session's Ray declares a GPU this machine does not have, and a task that
    # declares no share gets a quarter of a GPU where Ray has one
    run = compare("my_tasks.regression", methods=[("random", "asha")], seeds=[1], budget="smoke",
                  results_dir=tmp_path / "results", quiet=True, max_concurrent=2, gpus_per_trial=0)
    assert run.summary[["searcher", "scheduler", "seed"]].values.tolist() == [["random", "asha", 1]]
    assert run.summary["best_val_rmse"].iloc[0] > 0 and math.isfinite(run.summary["test_rmse"].iloc[0])
    assert (run.trials["status"] != "error").all()


def test_the_python_api_takes_a_taskspec_and_checks_like_the_command_line(ray_session, tmp_path, capsys):
    from experiments import compare
    from experiments.spec import SpecError
    from trainables import get_task

    task = dataclasses.replace(get_task(str(EXAMPLE)), name="diabetes_object")  # a TaskSpec built in Python
    capsys.readouterr()
    run = compare(task, methods="random:fifo", seeds=0, num_samples=3, budget="smoke", results_dir=tmp_path,
                  gpus_per_trial=0)
    assert capsys.readouterr().out == ""  # quiet by default: a notebook gets the run, not the terminal's lines
    assert len(run.trials) == 3 and run.summary["best_val_rmse"].notna().all() and run.task == "diabetes_object"
    assert list(run.table.columns[:3]) == ["searcher", "scheduler", "seed"] and "val_regret_rmse" in run.table
    for bad, message in (({"seeds": -1}, "negative seed"), ({"methods": "grid:nope"}, "unknown scheduler 'nope'"),
                         ({"methods": "random:promotion_curve"}, "a variant measured and not taken"),
                         ({"colour": "red"}, "unknown setting 'colour'"), ({"budget": "huge"}, "unknown budget")):
        with pytest.raises(SpecError, match=message):
            compare(task, **{"results_dir": tmp_path / "bad", **bad})
    assert not (tmp_path / "bad").exists()


# --- what a bad task gets: one line, exit 2, nothing written ---------------------------------------
BAD_TASKS = {
    "no_task.py": ("x = 1\n", "defines no TASK"),
    "not_a_spec.py": ("TASK = {'name': 'x'}\n", "TASK is a dict, not a core.task.TaskSpec"),
    "not_a_grid.py": ("from ray import tune\nfrom core.task import TaskSpec\n"
                      "TASK = TaskSpec(name='x', space={'lr': tune.loguniform(1e-4, 1e-1), 'num_epochs': (1,)})\n",
                      "hyperparameter 'lr' is not a grid of values"),
    "broken.py": ("import no_such_package_anywhere\n", "failed to import: ModuleNotFoundError"),
    "missing.py": (None, "does not exist"),
    "forgot_mode.py": ("from core.task import TaskSpec\n"
                       "TASK = TaskSpec(name='x', space={'num_epochs': (1,)}, metric='val_loss')\n",
                       "say which direction is better for val_loss: mode='min'"),
    # the code returns less than the declaration: found by one evaluation before any trial, not after
    # every trial failed and was retried
    "undeclared_metric.py": ("import dataclasses\n"
                             "from trainables.breast_cancer import TASK as BC, BreastCancerTrainable\n"
                             "TASK = dataclasses.replace(BC, name='bc_brier', trainable='Mine', "
                             "metrics=(*BC.metrics, 'brier'))\n"
                             "class Mine(BreastCancerTrainable):\n    task = TASK\n",
                             "task bc_brier failed its check before the first method (one configuration, untrained, "
                             "evaluated on the validation split): TaskContractError: BreastCancerRun.evaluate "
                             "returned accuracy, auc, f1, loss, without brier"),
}


@pytest.mark.parametrize("name", sorted(BAD_TASKS))
def test_a_bad_task_file_is_one_line_and_exit_2(name, tmp_path, capsys):
    text, message = BAD_TASKS[name]
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    results = tmp_path / "results"
    assert run_all.main(["--task", str(path), "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not results.exists()


def test_a_bad_task_module_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user_tasks_without_task.py").write_text("x = 1\n")
    for reference, message in (("user_tasks_without_task", "defines no TASK"),
                               ("no_such_user_module.task", "unknown task 'no_such_user_module.task'; allowed:")):
        assert run_all.main(["--task", reference, "--results-dir", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "results").exists()


def test_the_example_shown_in_the_docs_is_the_tested_file():
    doc = (ROOT / "docs" / "your-own-task.md").read_text()
    assert "lowres-tune example diabetes > diabetes_task.py" in doc and "lowres-tune --task diabetes_task.py" in doc
    for line in textwrap.dedent(EXAMPLE.read_text()).splitlines():
        if line.startswith(("TASK = TaskSpec(", "    metric=", "    mode=", "    metrics=")):
            assert line.strip() in doc, line


@pytest.mark.slow
def test_tensorboard_hparams_carry_the_tasks_metric(diabetes_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = sorted((diabetes_run / "tune" / "grid-fifo-s0").rglob("events.out*"))[0]
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    tags = set()
    for content in accumulator.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        tags |= {m.name.tag for m in data.experiment.metric_infos}
    assert {"ray/tune/val_rmse", "ray/tune/best_val_rmse"} <= tags and "ray/tune/val_accuracy" not in tags


def test_a_run_folder_written_before_tasks_named_their_metric_still_loads():
    """The shipped Breast Cancer table's run.json predates `metrics` and the task's name in `resolved`."""
    from analysis import load_run
    from experiments.replay import load_table

    folder = ROOT / "experiments" / "tables" / "breast_cancer"
    resolved = json.loads((folder / "run.json").read_text())["resolved"]
    assert "metrics" not in resolved and "task" not in resolved
    run = load_run(folder)
    assert run.objective == Objective() and run.task == "breast_cancer" and "best_val_accuracy" in run.summary
    table = load_table(folder)
    assert table.objective == Objective() and table.task_spec().metrics == ("accuracy", "f1", "auc", "loss")


def test_a_trainable_that_does_not_report_a_declared_metric_ends_in_one_line_without_retries():
    """TASK.metrics declares what evaluate() returns; where the code disagrees, the trial ends at once
    with one line naming both (a result, not an exception: Tune would retry an exception, and every
    retry fails the same way), and trials.csv records it as an error."""
    from experiments.collect import trial_status
    from trainables import get_task

    task = get_task("breast_cancer").for_budget("smoke")
    declared = dataclasses.replace(task, metrics=(*task.metrics, "brier"))
    trainable_cls = type("Declared", (task.load_trainable(),), {"task": declared})
    trainable = trainable_cls(config={**{n: v[0] for n, v in task.space.items()}, "seed": 0})
    try:
        result = trainable.step()
    finally:
        trainable.stop()
    assert result["done"] is True and result["val_accuracy"] == 0.0  # ranked last by the searchers
    assert result["task_error"].startswith("BreastCancerRun.evaluate returned accuracy, auc, f1, loss, without brier")
    assert trial_status([result], None, 1, 2) == "error"


def test_a_notebook_shows_a_bad_setting_in_one_line(tmp_path):
    """IPython (Jupyter's kernel) renders SpecError by its _render_traceback_: the one line, no traceback."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    shown = []
    shell._showtraceback = lambda etype, evalue, stb: shown.append(stb)
    shell.run_cell(f"from experiments import compare\ncompare('breast_cancer', seeds=-1, results_dir={str(tmp_path)!r})")
    assert shown == [["SpecError: --seeds '-1' has a negative seed; expected non-negative integers like '0,1,2'"]]

