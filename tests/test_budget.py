"""--time-budget (experiments.budget, analysis.budget) and the method the evidence picks
(experiments.recommend): the accounting, the stop rule, resume, the refusal, the table and its use."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

import run_all
from core.cli import format_duration, parse_duration
from experiments.spec import RECOMMENDED_METHOD, SpecError, parse_methods, resolve_recommended
from tests.analytic import TASK as ANALYTIC

ROOT = Path(__file__).resolve().parent.parent


def analytic_cost(config) -> float:
    """The analytic task's made-up epoch seconds (tests/analytic.py), declared so no probe runs."""
    return 0.1 * config["x"] + (0.05 if config["act"] == "tanh" else 0.0)


DECLARED = dataclasses.replace(ANALYTIC, name="analytic_budget", epoch_seconds=analytic_cost)


# --- durations ------------------------------------------------------------------------------------
def test_durations_read_as_a_user_writes_them():
    assert [parse_duration(t) for t in ("90m", "4h", "1h30m", "45s", "600", "1.5h", "2d")] == [
        5400, 14400, 5400, 45, 600, 5400, 172800]
    for bad in ("", "5x", "h", "-3m", "0", "4 hours"):
        with pytest.raises(ValueError, match="duration|no time"):
            parse_duration(bad)
    assert [format_duration(s) for s in (5400, 90, 12.5, 3600)] == ["1h30m", "1m30s", "12.5s", "1h"]


def test_a_bad_time_budget_is_one_line_and_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:  # argparse's exit, as for any bad flag
        run_all.main(["--time-budget", "soon", "--results-dir", str(tmp_path / "r")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("argument --time-budget: 'soon' is not a duration; expected e.g. 90m, 4h, 1h30m or 600 "
                        "(seconds)") and len(err.splitlines()) == 1


# --- the stop rule and resume ----------------------------------------------------------------------
class FakeTrial:
    def __init__(self, trial_id, status="RUNNING"):
        self.trial_id, self.status = trial_id, status


def test_the_trials_running_when_the_budget_is_spent_end_at_their_next_epoch_and_it_counts():
    from experiments.budget import budget_hooks

    stopper, watch = budget_hooks(10.0, on_gpu=False, default_share=0.0)
    trials = [FakeTrial("a"), FakeTrial("b"), FakeTrial("c", "PAUSED")]
    watch.on_step_begin(0, trials)
    assert stopper("a", {"epoch_seconds": 4.0}) is False and not stopper.stop_all()
    assert stopper("b", {"epoch_seconds": 4.0}) is False
    assert stopper("a", {"epoch_seconds": 3.0}) is True  # 11 >= 10: a ends, b is running: it may finish its epoch
    assert not stopper.stop_all()
    assert stopper("b", {"epoch_seconds": 4.0}) is True  # b's epoch counted, and it was the last
    assert stopper.ledger.spent == 15.0 and stopper.stop_all()  # the paused c holds no worker: not waited for


def test_a_trial_that_ends_otherwise_is_not_waited_for_and_gpu_seconds_count_the_share():
    from experiments.budget import budget_hooks

    stopper, watch = budget_hooks(1.0, on_gpu=True, default_share=0.25)
    watch.on_step_begin(0, [FakeTrial("a"), FakeTrial("b")])
    assert stopper("a", {"epoch_seconds": 2.0, "gpu_share": 0.5}) is True  # 1.0 GPU-second
    assert not stopper.stop_all()
    watch.on_trial_error(0, [], FakeTrial("b"))
    assert stopper.stop_all() and stopper.ledger.spent == 1.0
    stopper2, _ = budget_hooks(10.0, on_gpu=True, default_share=0.25)
    stopper2("x", {"time_this_iter_s": 4.0})  # no epoch_seconds, no share: Tune's time x the run's share
    assert stopper2.ledger.spent == 1.0


def test_a_resumed_method_spends_only_the_rest_of_its_budget():
    """Tune pickles the run config (stopper and callbacks, one pickle) and snapshots each callback's
    get_state; a restore unpickles the first and calls set_state with the second."""
    from experiments.budget import budget_hooks

    stopper, watch = budget_hooks(10.0, on_gpu=False, default_share=0.0)
    watch.on_step_begin(0, [FakeTrial("a")])
    stopper("a", {"epoch_seconds": 6.0})
    snapshot = watch.get_state()
    restored_stopper, restored_watch = pickle.loads(pickle.dumps((budget_hooks(10.0, False, 0.0))))
    assert restored_stopper.ledger is restored_watch.ledger  # one ledger after the restore, too
    restored_watch.set_state(snapshot)
    restored_watch.on_step_begin(0, [FakeTrial("a")])
    assert restored_stopper("a", {"epoch_seconds": 3.0}) is False  # 9 of 10: the 6 before count
    assert restored_stopper("a", {"epoch_seconds": 3.0}) is True
    spent_out = budget_hooks(10.0, False, 0.0)
    spent_out[1].set_state({"spent": 12.0})
    assert spent_out[0].stop_all()  # interrupted after the budget was spent: nothing more runs


# --- end to end, through the Python API ------------------------------------------------------------
@pytest.fixture(scope="module")
def budgeted_run(ray_session, tmp_path_factory):
    from experiments import compare
    from trainables import register_task

    register_task(DECLARED)
    return compare(DECLARED, methods="grid,random:asha,recommended", time_budget=3.0,
                   results_dir=tmp_path_factory.mktemp("budget"), max_concurrent=2)


def test_every_method_spends_the_budget_within_one_epoch_of_each_running_trial(budgeted_run):
    summary = budgeted_run.summary
    info = budgeted_run.info
    assert info["resolved"]["time_budget_s"] == 3.0 and info["resolved"]["compute_unit"] == "trial_seconds"
    largest_epoch = max(analytic_cost(c) for c in DECLARED.configurations())
    assert (summary["compute_budget"] == 3.0).all()
    assert ((summary["compute_spent"] >= 3.0) & (summary["compute_spent"] < 3.0 + 2 * largest_epoch)).all()
    curves = budgeted_run.curves
    for _, row in summary.iterrows():  # spent is what the method's epochs cost
        mine = curves[(curves["searcher"] == row["searcher"]) & (curves["scheduler"] == row["scheduler"])]
        assert row["compute_spent"] == pytest.approx(mine["epoch_seconds"].sum())
    # the grid's estimate is the declared costs summed, and the budget is a share of it
    grid = sum(analytic_cost(c) * c["epochs"] for c in DECLARED.configurations())
    assert info["estimate"]["grid_compute"] == pytest.approx(grid) and not info["estimate"]["measured"]
    assert info["recommendation"]["fraction"] == pytest.approx(3.0 / grid)


def test_the_report_compares_the_methods_at_equal_compute(budgeted_run):
    report = (budgeted_run.path / "summary.md").read_text()
    section = report[report.index("## At equal compute: 3 trial-seconds each"):]
    grid = json.loads((budgeted_run.path / "run.json").read_text())["estimate"]["grid_compute"]
    assert f"val_accuracy at 5% of the grid ({0.05 * grid:.3g})" in section and "| val_accuracy at the end |" in section
    assert "at 25% of the grid" not in section  # above the budget: not a point of this run
    rows = [line for line in section.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(rows) == len(budgeted_run.summary)
    for line in rows:  # at the end: the method's best, the pick's value
        cells = [c.strip() for c in line.strip("|").split("|")]
        mine = budgeted_run.summary[budgeted_run.summary["searcher"] + ":" + budgeted_run.summary["scheduler"]
                                    == cells[0]].iloc[0]
        assert float(cells[-2]) == pytest.approx(mine["best_val_accuracy"], abs=5e-5)


def test_a_budget_below_one_epoch_of_the_cheapest_configuration_is_refused(ray_session, tmp_path):
    from experiments import compare

    with pytest.raises(SpecError, match=r"--time-budget 0.05s is below one epoch of the cheapest configuration "
                                        r"\(0.1 trial-seconds, declared\)"):
        compare(DECLARED, methods="random", time_budget=0.05, results_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    with pytest.raises(SpecError, match="time_budget: 'soon' is not a duration"):
        compare(DECLARED, methods="random", time_budget="soon", results_dir=tmp_path / "r")


# --- the method the evidence picks -----------------------------------------------------------------
def test_the_recommendation_table_is_generated_from_the_committed_suite_rows(tmp_path):
    from experiments import recommend

    rebuilt = tmp_path / "recommendation.csv"
    recommend.write_table(recommend.generate(ROOT / recommend.SOURCE), rebuilt)
    assert rebuilt.read_text() == recommend.RECOMMENDATION.read_text()  # `python -m experiments.recommend` wrote it
    committed = pd.read_csv(recommend.RECOMMENDATION)
    assert list(committed["budget_pct"]) == [0.5, 1, 2, 5, 10, 25] and (committed["n_seeds"] == 10).all()


def test_recommended_picks_the_table_row_for_the_budget_share():
    from experiments.recommend import load_table, recommend

    table = load_table()
    by_pct = {r.budget_pct: r for r in table}
    for fraction, row in ((0.001, 0.5), (0.015, 1), (0.03, 2), (0.07, 5), (0.2, 10), (3.0, 25)):
        assert recommend(fraction) == by_pct[row]
    chosen = recommend(0.3)
    assert chosen.why(0.3, "estimated").startswith(f"{chosen.method}: at 30.00% of the grid's compute (estimated), "
                                                   "the LCBench suite's 25% row: lowest normalized regret of")
    # a different table, a different choice: the mechanism reads the data
    other = [dataclasses.replace(r, method="random:fifo") for r in table]
    assert recommend(0.3, other).method == "random:fifo"


def test_recommended_takes_its_place_among_the_methods():
    methods = parse_methods("grid,recommended,random:asha")
    assert methods == (("grid", "fifo"), RECOMMENDED_METHOD, ("random", "asha"))
    assert resolve_recommended(methods, ("bayesopt", "fifo")) == (("grid", "fifo"), ("bayesopt", "fifo"),
                                                                   ("random", "asha"))
    assert resolve_recommended(methods, ("grid", "fifo")) == (("grid", "fifo"), ("random", "asha"))  # named once
    with pytest.raises(SpecError, match="recommended is named twice"):
        parse_methods("recommended,recommended")


def test_the_budgeted_run_ran_the_recommended_method_and_kept_its_weights(budgeted_run):
    from experiments.recommend import recommend

    info = budgeted_run.info
    chosen = recommend(info["recommendation"]["fraction"])
    assert info["recommendation"]["method"] == chosen.method
    assert (chosen.searcher, chosen.scheduler) in budgeted_run.methods and len(budgeted_run.methods) == 3
    row = budgeted_run.summary[(budgeted_run.summary["searcher"] == chosen.searcher)
                               & (budgeted_run.summary["scheduler"] == chosen.scheduler)].iloc[0]
    trial = budgeted_run.path / "tune" / f"{chosen.searcher}-{chosen.scheduler}-s0" / f"trial_{row['best_trial_id']}"
    assert list(trial.glob("checkpoint_*"))  # kept beside the run's best pick


# --- what the command line offers --------------------------------------------------------------------
def test_list_methods_names_each_method_and_the_budgets_the_evidence_gives(capsys):
    from searchers import EXPERIMENTAL_SCHEDULERS, SCHEDULERS, SEARCHERS
    from searchers.catalog import budget_ranges

    assert run_all.main(["--list-methods"]) == 0
    out = capsys.readouterr().out
    ranges = budget_ranges()
    assert ranges[0][1] == 0.0 and ranges[-1][2] is None  # from nothing to everything, in order
    for method, start, end in ranges:
        assert method in out
    for name in (*SEARCHERS, *SCHEDULERS):
        assert f"  {name} " in out
    assert not any(name in out for name in EXPERIMENTAL_SCHEDULERS)


def test_a_variant_tried_and_not_taken_is_the_replays_not_a_runs(capsys, tmp_path):
    from experiments.spec import parse_methods as parse
    from searchers import ALL_SCHEDULERS

    assert run_all.main(["--methods", "random:promotion_curve", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "scheduler 'promotion_curve' is a variant measured and not taken (docs/results/variants-tried.md)" in err
    assert parse("random:promotion_curve", ALL_SCHEDULERS) == (("random", "promotion_curve"),)
    assert (ROOT / "docs" / "results" / "variants-tried.md").is_file()
