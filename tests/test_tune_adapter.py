"""Our reads of Ray Tune's internals (experiments/tune_adapter.py) against the Ray installed:
a Ray upgrade that changes them fails here, by name, not somewhere in a run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

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
            assert result.config["x"] == trial.config["x"]  # each Trial with its own Result
    numbers = [tune_adapter.creation_number(trial) for trial, _ in pairs]
    assert numbers == list(range(numbers[0], numbers[0] + len(pairs))), \
        "experiments/tune_adapter.py: Tune's experiment_tag no longer starts with its trial counter"


def test_a_searchers_trials_come_in_the_order_tune_created_them(ray_session, tmp_path):
    tuned = tune(TASK, "hyperopt", "fifo", 0, tmp_path, num_samples=4)  # SearchGenerator's counter, not the grid's
    pairs = tune_adapter.trials_with_results(tuned.results)
    numbers = [tune_adapter.creation_number(trial) for trial, _ in pairs]
    assert numbers == list(range(numbers[0], numbers[0] + 4))


def test_trials_are_ordered_by_creation_whatever_the_result_grids_order():
    # Tune's ResultGrid lists trials in snapshot order, which a resume reshuffles: the pick's tie-break
    # ("the trial started first") must not follow it
    pairs = [(SimpleNamespace(trial_id=f"t{n}", experiment_tag=f"{n}_x={n}"), SimpleNamespace(n=n)) for n in (2, 0, 10, 1)]
    ordered = tune_adapter.trials_with_results(_Grid(pairs))
    assert [result.n for _, result in ordered] == [0, 1, 2, 10] and [t.trial_id for t, _ in ordered] == ["t0", "t1", "t2", "t10"]
    with pytest.raises(RuntimeError, match="tune_adapter.py"):
        tune_adapter.trials_with_results(_Grid([(SimpleNamespace(trial_id="t", experiment_tag="lr=0.1"), None)]))


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

    trial = SimpleNamespace(trial_id="t0", experiment_tag="0", config={"x": 3, "learning_rate": 1e-3, "act": "relu", "epochs": 3},
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
