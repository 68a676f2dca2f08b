"""The replay benchmark: recorded numbers replayed exactly, deterministic, the same choices as
a real run, statistics that give known answers, and one-line errors for tables it cannot use."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon as scipy_wilcoxon

from analysis.stats import wilcoxon
from core import records
from core.rules import select_trial
from experiments import replay
from tests.analytic import TASK as ANALYTIC
from tests.tuning import collect, tune

# --- a hand-made table: three configurations of x, two of epochs ---------------------------
SPACE = {"x": [1, 2, 3], "epochs": [1, 2]}
# val_accuracy per epoch of (x, epochs=2); the epochs=1 configurations keep the first epoch.
CURVES = {1: [0.5, 0.6], 2: [0.7, 0.9], 3: [0.8, 0.8]}
SECONDS = {1: 1.0, 2: 2.0, 3: 3.0}  # each epoch of x takes x seconds


def hand_frames(seeds=(0,), offset=0.0):
    trials, curves = [], []
    for seed in seeds:
        for i, (x, epochs) in enumerate((x, e) for x in SPACE["x"] for e in SPACE["epochs"]):
            trial_id = f"t{seed}_{i}"
            identity = {"task": "hand", "searcher": "grid", "scheduler": "fifo", "seed": seed, "trial_id": trial_id}
            trials.append({**identity, "status": records.COMPLETED, "config/x": x, "config/epochs": epochs})
            for epoch in range(1, epochs + 1):
                accuracy = CURVES[x][epoch - 1] + offset * seed
                curves.append({**identity, "epoch": epoch, "val_accuracy": accuracy, "val_loss": 1 - accuracy,
                               "epoch_seconds": SECONDS[x], "test_accuracy": accuracy - 0.01})
    return pd.DataFrame(trials), pd.DataFrame(curves)


def hand_table(**kwargs):
    trials, curves = hand_frames(**kwargs)
    return replay.table_from_frames(trials, curves, space=SPACE, task="hand", epochs_param="epochs",
                                    grace_period=1, reduction_factor=2, max_concurrent=1, num_samples=4)


def test_the_table_knows_its_optimum_and_compute():
    table = hand_table()
    assert len(table.curves) == 6
    assert table.optimum == pytest.approx(0.9)  # x=2 trained 2 epochs
    assert table.grid_compute == pytest.approx(sum(SECONDS[x] * (1 + 2) for x in SPACE["x"]))  # 18 s
    assert table.value((2, 2), 1) == pytest.approx(0.7) and table.value((3, 2), 2) == pytest.approx(0.8)
    # grid's pick: x=2, epochs=2 (0.9), scored at its best epoch (2): 0.9 - 0.01
    assert table.grid_selection_test() == pytest.approx(0.89)


def test_the_replayed_trial_reports_exactly_the_recorded_numbers():
    table = hand_table()
    curve = table.curves[(2, 2)][0]
    trial = replay.ReplayedTrial(curve, epochs=2)
    first, second = trial.step(), trial.step()
    assert (first["epoch"], first["val_accuracy"], first["val_loss"], first["epoch_seconds"]) == (1, 0.7, 1 - 0.7, 2.0)
    assert (second["epoch"], second["val_accuracy"], second["best_val_accuracy"], second["done"]) == (2, 0.9, 0.9, True)
    assert not first["done"]
    assert not any(name.startswith("test_") for name in {**first, **second})  # the test split stays hidden


def test_grid_replay_on_the_simulated_clock_gives_the_known_answer():
    table = hand_table()
    run = replay.replay_method(table, "grid", "fifo", seed=0)
    # Ray's grid order here: x varies slowest; one trial at a time.
    assert [t["key"] for t in run.trials] == [(x, e) for x in SPACE["x"] for e in SPACE["epochs"]]
    # epochs end at 1, 2, 3 (x=1), 5, 7, 9 (x=2), 12, 15, 18 (x=3); one trial at a time: compute = time
    assert list(run.events["sim_time"]) == [1, 2, 3, 5, 7, 9, 12, 15, 18]
    assert list(run.events["compute"]) == list(run.events["sim_time"])
    # regret (points) once 5%, 10%, 25%, 50% of the 18 s are used: 0.9 s (nothing yet), 1.8 s, 4.5 s, 9 s
    assert replay.regret_at(run, table, replay.REGRET_FRACTIONS) == pytest.approx([90.0, 40.0, 30.0, 0.0])
    assert replay.compute_to_reach(run, table) == pytest.approx(9 / 18)  # x=2's second epoch ends at 9 s
    assert replay.selected_test_value(run, table) == pytest.approx(0.89)
    assert run.sim_seconds == 18 and run.compute == 18


def test_concurrent_trials_share_the_simulated_clock():
    table = hand_table()
    run = replay.replay_method(table, "grid", "fifo", seed=0, max_concurrent=2)
    # (1,1) and (1,2) start at 0; every epoch of x=1 takes 1 s; compute counts both trials' time
    first = run.events.iloc[0]
    assert first["sim_time"] == 1 and first["compute"] == 2  # two trials each ran 1 s
    assert run.compute == pytest.approx(table.grid_compute)
    assert run.sim_seconds < table.grid_compute  # two at a time: less wall than compute


def test_several_training_seeds_are_drawn_and_averaged():
    table = hand_table(seeds=(0, 1), offset=0.02)
    assert table.value((2, 2), 2) == pytest.approx(0.91)  # mean of 0.9 and 0.92
    draws = {t["training_seed"] for seed in range(4) for t in replay.replay_method(table, "grid", "fifo", seed).trials}
    assert draws == {0, 1}


def test_statistics_on_a_hand_made_seed_table():
    table = hand_table()
    rows = []
    for seed in range(6):
        base = {"seed": seed, "compute_share": 0.5, "test_accuracy": 0.8}
        rows.append({**base, "searcher": "random", "scheduler": "fifo", "compute_to_reach": 0.5,
                     **{f"regret_pts_at_{p}pct": 2.0 + seed for p in (5, 10, 25, 50)}})
        rows.append({**base, "searcher": "bayesopt", "scheduler": "asha", "compute_to_reach": math.inf if seed < 2 else 0.1,
                     **{f"regret_pts_at_{p}pct": 1.0 + seed / 2 for p in (5, 10, 25, 50)}})
    summary = replay.summarize(pd.DataFrame(rows), table).set_index("searcher")
    bo = summary.loc["bayesopt"]
    assert bo["regret_pts_at_10pct_median"] == pytest.approx(np.median([1 + s / 2 for s in range(6)]))
    assert (bo["regret_pts_at_10pct_q25"], bo["regret_pts_at_10pct_q75"]) == pytest.approx(
        tuple(np.percentile([1 + s / 2 for s in range(6)], [25, 75])))
    assert bo["reach_share"] == pytest.approx(4 / 6) and bo["compute_to_reach_median"] == pytest.approx(0.1)
    # every seed: bayesopt lower than random -> all six differences negative: r = -1, exact p = 2/2^6
    assert bo["vs_random_at_10pct_r"] == -1.0
    assert bo["vs_random_at_10pct_p"] == pytest.approx(2 / 64)
    assert bo["vs_random_at_10pct_diff_median"] == pytest.approx(np.median([(1 + s / 2) - (2 + s) for s in range(6)]))
    assert pd.isna(summary.loc["random", "vs_random_at_10pct_p"])  # no test against itself
    assert bo["test_accuracy_vs_grid_pts"] == pytest.approx(100 * (0.8 - 0.89))


def test_wilcoxon_matches_scipy_and_handles_ties():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [2.0, 1.5, 4.0, 6.0, 5.0, 9.0, 7.5]
    p, r = wilcoxon(x, y)
    d = np.array(x) - np.array(y)
    assert p == pytest.approx(scipy_wilcoxon(d[d != 0]).pvalue)
    # nonzero d: -1, +0.5, -1, -2, -3, -0.5; ranks of |d|: 3.5, 1.5, 3.5, 5, 6, 1.5 (sum 21); positive: 1.5
    assert r == pytest.approx((1.5 - 19.5) / 21)
    assert wilcoxon([1.0, 2.0], [1.0, 2.0]) == (1.0, 0.0)


@pytest.mark.parametrize("n", [2, 5, 10, 13, 14, 20])
def test_wilcoxon_with_tied_differences_is_scipys_exact_test_vectorized(n):
    # ties (common: seeds that reach regret 0) make scipy run a permutation test for n <= 13;
    # ours is the same test with the statistic vectorized, and must give the same p-values
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.choice([-2.0, -1.0, 0.5, 1.0, 3.0], size=n)
        assert wilcoxon(d, np.zeros(n))[0] == pytest.approx(scipy_wilcoxon(d).pvalue, rel=1e-12)


def test_the_same_seed_replays_the_same_run():
    table = hand_table()
    for searcher, scheduler in (("random", "asha"), ("hyperopt", "asha"), ("bayesopt", "fifo")):
        a = replay.replay_method(table, searcher, scheduler, seed=3, num_samples=4)
        b = replay.replay_method(table, searcher, scheduler, seed=3, num_samples=4)
        assert [t["key"] for t in a.trials] == [t["key"] for t in b.trials]
        pd.testing.assert_frame_equal(a.events, b.events)  # trial ids too: numbered, never drawn
    assert [t["trial_id"] for t in a.trials] == [f"{i:08d}" for i in range(1, len(a.trials) + 1)]
    keys = {tuple(t["key"] for t in replay.replay_method(table, "random", "fifo", seed, num_samples=4).trials)
            for seed in range(4)}
    assert len(keys) > 1  # and different seeds explore differently


# --- replay against a real run ---------------------------------------------------------------
TINY = dataclasses.replace(ANALYTIC, space={**ANALYTIC.space, "x": (1, 2, 3, 4), "learning_rate": (1e-3, 1e-2)})


@pytest.fixture(scope="module")
def analytic_table(ray_session, tmp_path_factory):
    """A real grid:fifo run of the analytic task, recorded as a replay table."""
    tuned = tune(TINY, "grid", "fifo", 0, tmp_path_factory.mktemp("grid"))
    trials, curves, _ = collect(tuned, TINY, "grid", "fifo", 0)
    return replay.table_from_frames(pd.DataFrame(trials), pd.DataFrame(curves), space=TINY.space, task="analytic",
                                    epochs_param="epochs", grace_period=TINY.grace_period,
                                    reduction_factor=TINY.reduction_factor, max_concurrent=1, num_samples=8)


@pytest.mark.parametrize("searcher,scheduler", [("random", "asha"), ("hyperopt", "asha"), ("bayesopt", "asha"),
                                                ("random", "promotion"), ("bayesopt", "promotion"),
                                                ("random", "hyperband_promotion"),
                                                ("bayesopt", "promotion_anytime"), ("random", "promotion_curve"),
                                                ("random", "promotion_bracket1"), ("dpl", "freeze_thaw")])
def test_replay_makes_the_choices_a_real_run_makes(ray_session, tmp_path, analytic_table, searcher, scheduler):
    # One trial at a time: the real run's order of events is then fixed too. The curve choice's model
    # needs d + 1 = 5 gains between two rungs: 48 trials give it them.
    samples = 48 if scheduler == "promotion_curve" else 8
    tuned = tune(TINY, searcher, scheduler, 5, tmp_path, num_samples=samples, max_concurrent=1)
    real, _, _ = collect(tuned, TINY, searcher, scheduler, 5)
    replayed = replay.replay_method(analytic_table, searcher, scheduler, seed=5, num_samples=samples, max_concurrent=1)
    assert [tuple(t[f"config/{n}"] for n in TINY.space) for t in real] == [t["key"] for t in replayed.trials]
    # ASHA stopped the same ones; promotion paused, resumed and stopped the same ones
    assert [t["epochs"] for t in real] == [t["epochs"] for t in replayed.trials]
    assert [t["best_val_accuracy"] for t in real] == [t["best_val_accuracy"] for t in replayed.trials]


@pytest.mark.parametrize("searcher,scheduler", [("random", "fifo"), ("random", "asha"), ("bayesopt", "fifo")])
def test_a_time_budget_spends_what_the_replay_spends_and_picks_what_it_picks(ray_session, tmp_path, analytic_table,
                                                                              searcher, scheduler):
    """--time-budget in a real run (experiments.budget) against the replay at the same share of the grid's
    compute: one trial at a time, so both see the same order; the analytic task's epoch costs are made up
    and fixed, so compute is exact. The real run's trials end where the replay's do, it spends the budget
    plus less than one epoch, and its pick is the replay's."""
    share = 0.3
    budget = share * analytic_table.grid_compute
    tuned = tune(TINY, searcher, scheduler, 5, tmp_path, num_samples=200, max_concurrent=1, time_budget_s=budget)
    real, curves, _ = collect(tuned, TINY, searcher, scheduler, 5)
    replayed = replay.replay_method(analytic_table, searcher, scheduler, seed=5, num_samples=200, max_concurrent=1,
                                    budget=share)
    trained = [t for t in replayed.trials if t["epochs"]]  # the replay lists a trial started as the budget ran out
    assert [tuple(t[f"config/{n}"] for n in TINY.space) for t in real] == [t["key"] for t in trained]
    assert [t["epochs"] for t in real] == [t["epochs"] for t in trained]
    spent = sum(c["epoch_seconds"] for c in curves)
    assert budget <= spent < budget + max(c["epoch_seconds"] for c in curves)
    assert spent == pytest.approx(replayed.compute)
    assert select_trial(real, TINY.objective)["best_val_accuracy"] == replayed.selected["best_val_accuracy"]


# --- the command line ------------------------------------------------------------------------
def test_replay_cli_on_a_real_run_folder(smoke_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert replay.main([str(smoke_run), "--seeds", "3", "--methods", "random:fifo,bayesopt:asha", "--out", str(out),
                        "--workers", "1"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == list(replay.summary_columns(replay.load_table(smoke_run)))
    assert list(zip(summary["searcher"], summary["scheduler"])) == [("random", "fifo"), ("bayesopt", "asha")]
    assert (summary["n_seeds"] == 3).all()
    seeds = pd.read_csv(out / "seeds.csv")
    assert len(seeds) == 6 and (seeds["final_regret_pts"] >= 0).all()
    assert (out / "plots" / "anytime_regret.png").stat().st_size > 0
    assert "Replay of breast_cancer" in (out / "summary.md").read_text()
    # the numbers replayed are exactly those in the file, digit for digit
    table = replay.load_table(smoke_run)
    with open(smoke_run / "curves.csv", newline="") as f:
        grid_rows = [r for r in csv.DictReader(f) if r["searcher"] == "grid"]
    trial_keys = {t["trial_id"]: table.key({n: t[f"config/{n}"] for n in table.space})
                  for t in pd.read_csv(smoke_run / "trials.csv").to_dict("records")}
    for row in grid_rows:
        curve = table.curves[trial_keys[row["trial_id"]]][0]
        step = replay.ReplayedTrial(curve, len(curve.epoch_seconds))
        reported = [step.step() for _ in range(int(row["epoch"]))][-1]
        assert reported["val_accuracy"] == float(row["val_accuracy"]) and reported["val_loss"] == float(row["val_loss"])
        assert reported["epoch_seconds"] == float(row["epoch_seconds"])
    info = json.loads((out / "replay.json").read_text())
    assert info["max_concurrent"] == json.loads((smoke_run / "run.json").read_text())["resolved"]["max_concurrent"]


def test_the_builtin_table_replays_on_a_fresh_install(tmp_path):
    assert "breast_cancer" in replay.builtin_tables()
    table = replay.load_table(replay.BUILTIN / "breast_cancer")
    assert len(table.curves) == 162 and table.has_test
    out = tmp_path / "builtin"
    assert replay.main(["--builtin", "breast_cancer", "--seeds", "2", "--methods", "hyperopt:asha", "--out", str(out),
                        "--workers", "1"]) == 0
    assert len(pd.read_csv(out / "seeds.csv")) == 2
    text = (out / "summary.md").read_text()  # every replayed table's fidelity is checked and reported
    assert "Fidelity sanity" in text and "| 10 | 162 | 0.69 |" in text and "WARNING" not in text
    # what looks contradictory is explained where it is shown (issue 25, item 8)
    assert "Regret can rise over compute" in text and "100% reaching can stand next to" in text
    assert "r is -1 or 1 while p stays near 1" in text
    assert list(pd.read_csv(out / "fidelity.csv")["rung"]) == [10, 30, 90]


def test_a_second_replay_into_the_same_folder_is_refused_and_the_first_kept(tmp_path, capsys):
    out = tmp_path / "replay"
    argv = ["--builtin", "breast_cancer", "--seeds", "1", "--methods", "random:fifo", "--out", str(out), "--workers", "1"]
    assert replay.main(argv) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    other = ["--builtin", "breast_cancer", "--seeds", "2", "--methods", "rungbo:asha", "--out", str(out), "--workers", "1"]
    assert replay.main(other) == 2  # before: seeds.csv went from the first replay's rows to the second's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an earlier replay" in err[0] and "--out" in err[0]
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _copy_run(smoke_run, tmp_path, drop_trials=0, drop_curve_rows=0):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text((smoke_run / "run.json").read_text())
    trials, curves = pd.read_csv(smoke_run / "trials.csv"), pd.read_csv(smoke_run / "curves.csv")
    grid = trials.index[trials["searcher"] == "grid"]
    trials = trials.drop(grid[:drop_trials])
    grid_curves = curves.index[curves["searcher"] == "grid"]
    curves = curves.drop(grid_curves[len(grid_curves) - drop_curve_rows:] if drop_curve_rows else [])
    trials.to_csv(folder / "trials.csv", index=False)
    curves.to_csv(folder / "curves.csv", index=False)
    return folder


@pytest.mark.parametrize("case,expected", [
    ("not_a_run", "no run.json, trials.csv, curves.csv"),
    ("no_grid", "holds no grid run with the fifo scheduler"),
    ("missing_config", "is missing 1 of"),
    ("missing_epochs", "a replay table needs every epoch"),
    ("bad_methods", "malformed"),
    ("unknown_searcher", "unknown searcher"),
    ("no_source", "one of them"),
    ("zero_seeds", "--seeds must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(smoke_run, tmp_path, capsys, case, expected):
    args = {
        "not_a_run": lambda: [str(tmp_path)],
        "no_grid": lambda: [str(_without_grid(smoke_run, tmp_path))],
        "missing_config": lambda: [str(_copy_run(smoke_run, tmp_path, drop_trials=1))],
        "missing_epochs": lambda: [str(_copy_run(smoke_run, tmp_path, drop_curve_rows=1))],
        "bad_methods": lambda: [str(smoke_run), "--methods", "random,,bayesopt"],
        "unknown_searcher": lambda: [str(smoke_run), "--methods", "smac"],
        "no_source": list,
        "zero_seeds": lambda: [str(smoke_run), "--seeds", "0"],
    }[case]()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert exit_status(args + ["--out", str(tmp_path / "out")] if args else args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder


def exit_status(argv) -> int:
    """main()'s status, whether it returns it or argparse exits with it."""
    try:
        return replay.main(argv)
    except SystemExit as exc:
        return exc.code


def _without_grid(smoke_run, tmp_path):
    folder = _copy_run(smoke_run, tmp_path)
    for name in ("trials.csv", "curves.csv"):
        frame = pd.read_csv(folder / name)
        frame[frame["searcher"] != "grid"].to_csv(folder / name, index=False)
    return folder


def _blas_threads(_):
    import threadpoolctl

    return {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info()}


@pytest.mark.parametrize("workers", [1, 2])
def test_replays_compute_with_one_blas_thread_whatever_loads_it(workers):
    # scipy loads its own OpenBLAS on first use, after numpy's: each must be limited (two workers
    # with a thread per core each ran a BayesOpt replay 9x slower)
    from experiments.replay.simulator import map_jobs

    for threads in map_jobs(_blas_threads, [0, 1], workers):
        assert threads and set(threads.values()) == {1}, threads


@pytest.mark.parametrize("searcher,scheduler", [("random", "asha"), ("random", "hyperband"), ("grid", "asha"),
                                                ("random", "promotion")])
def test_drawing_the_generators_configurations_once_changes_no_replay(monkeypatch, searcher, scheduler):
    """Grid and random replays read the configurations Ray's generator draws from a per-process list
    (variants.FAST_VARIANTS): every replay is the same as with the generator itself, twice in a row."""
    from experiments.replay import variants

    table = replay.load_table(replay.BUILTIN / "breast_cancer")
    runs = []
    for fast in (False, True, True):
        monkeypatch.setattr(variants, "FAST_VARIANTS", fast)
        runs.append(replay.replay_method(table, searcher, scheduler, seed=2, num_samples=40, max_concurrent=2))
    for run in runs[1:]:
        assert [t["key"] for t in run.trials] == [t["key"] for t in runs[0].trials]
        assert [t["epochs"] for t in run.trials] == [t["epochs"] for t in runs[0].trials]
        pd.testing.assert_frame_equal(run.events.drop(columns="trial_id"), runs[0].events.drop(columns="trial_id"))
