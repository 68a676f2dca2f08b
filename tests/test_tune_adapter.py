"""Our reads of Ray Tune's internals (experiments/tune_adapter.py) against the Ray installed:
a Ray upgrade that changes them fails here, by name, not somewhere in a run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from core import records
from experiments import tune_adapter
from experiments.collect import collect_trials
from experiments.plan import Method
from tests.analytic import TASK
from tests.tuning import tune
from core.rules import Objective

FAILING = {"fail_x": (2,)}  # every x=2 trial raises before its first report


def test_trials_with_results_gives_every_trial_its_config_even_without_a_report(ray_session, tmp_path):
    task = TASK.for_budget("full")
    tuned = tune(task, "grid", "fifo", 0, tmp_path, fixed_config=FAILING)
    pairs = tune_adapter.trials_with_results(tuned.results)
    assert len(pairs) == task.grid_size, "experiments/tune_adapter.py: ResultGrid._experiment_analysis.trials changed"
    for trial, result in pairs:
        assert trial.config["x"] in task.space["x"] and trial.trial_id
        if trial.config["x"] == 2:
            assert result.error is not None  # the Trial still says which configuration failed
        else:
            assert result.config["x"] == trial.config["x"]  # same order as the ResultGrid


def test_experiment_state_reads_back_every_trial_status(ray_session, tmp_path):
    tuned = tune(TASK, "random", "fifo", 0, tmp_path, num_samples=3)
    folder = tmp_path / Method("random", "fifo", 0).name
    state = tune_adapter.newest_state(folder)
    assert state is not None and "trial_data" in state, \
        "experiments/tune_adapter.py: Tune's experiment_state-*.json layout changed"
    statuses = tune_adapter.trial_statuses(folder)
    assert statuses == {t.trial_id: "TERMINATED" for t, _ in tune_adapter.trials_with_results(tuned.results)}
    assert tune_adapter.can_restore(folder)


def test_a_truncated_state_is_not_restorable(ray_session, tmp_path):
    tune(TASK, "random", "fifo", 0, tmp_path, num_samples=1)
    folder = tmp_path / Method("random", "fifo", 0).name
    for state in folder.glob("experiment_state-*.json"):
        state.write_text(state.read_text()[:20])  # ray issue 58179: Tune's own check passes this
    assert tune_adapter.newest_state(folder) is None and not tune_adapter.can_restore(folder)


class _Grid(list):
    """A ResultGrid's shape (iterable Results, ``_experiment_analysis.trials``), with made-up reports."""

    def __init__(self, pairs):
        super().__init__(result for _, result in pairs)
        self._experiment_analysis = SimpleNamespace(trials=[trial for trial, _ in pairs])


def test_a_report_without_an_epoch_is_not_counted_as_one():
    # Tune can append a report without our keys (a trial that failed mid-report); it used to
    # reach int(None) in the trial's row and abort the whole method's collection.
    reports = [{"epoch": 1, "val_accuracy": 0.6, "timestamp": 10}, {"epoch": 2, "val_accuracy": 0.7, "timestamp": 11},
               {"epoch": None, "val_accuracy": None, "timestamp": 12}, {"timestamp": 13}]
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    trial = SimpleNamespace(trial_id="t0", config={"x": 3, "learning_rate": 1e-3, "act": "relu", "epochs": 3},
                            placement_group_factory=PlacementGroupFactory([{"CPU": 1}]), error_file=None,
                            run_metadata=SimpleNamespace(error_filename=None))
    result = SimpleNamespace(metrics_dataframe=pd.DataFrame(reports), error=None, metrics={"time_total_s": 2.0})
    collected = collect_trials(_Grid([(trial, result)]), TASK, Method("grid", "fifo", 0), started=0.0)
    (row,) = collected.trials
    assert row["epochs"] == 2 and row["status"] == records.STOPPED and row["best_val_accuracy"] == 0.7
    assert [c["epoch"] for c in collected.curves] == [1, 2]
    json.dumps(row)  # a plain row, as trials.csv writes it


def test_best_reported_is_the_highest_metric_a_trial_reported(ray_session, tmp_path):
    tuned = tune(TASK, "random", "fifo", 0, tmp_path, num_samples=2)
    for trial, result in tune_adapter.trials_with_results(tuned.results):
        best = result.metrics_dataframe["val_accuracy"].max()
        assert tune_adapter.best_reported(trial, Objective()) == best, \
            "experiments/tune_adapter.py: Trial.metric_analysis changed"
