"""LCBench replay tables from the shipped surrogate, and the suite's cross-data-set statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.replay import lcbench, suite
from experiments.replay.stats import ANYTIME_POINTS


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lcbench")
    lcbench.write_table(lcbench.Surrogate(), "3945", folder / "3945")
    return folder


def test_a_table_holds_the_whole_grid_deterministically(table_dir, tmp_path):
    from experiments.replay import load_table

    table = load_table(table_dir / "3945")
    assert len(table.curves) == 1944 and all(len(c[0].epoch_seconds) == 52 for c in table.curves.values())
    assert (table.grace_period, table.reduction_factor) == (lcbench.GRACE_PERIOD, lcbench.REDUCTION_FACTOR)
    assert 0 < table.median_value < table.optimum <= 1 and table.has_test
    again = lcbench.write_table(lcbench.Surrogate(), "3945", tmp_path / "3945")
    for name in ("trials.csv", "run.json"):
        assert (again / name).read_bytes() == (table_dir / "3945" / name).read_bytes()
    assert pd.read_csv(again / "curves.csv.gz").equals(pd.read_csv(table_dir / "3945" / "curves.csv.gz"))


def test_the_suite_replays_within_its_compute_budget(table_dir):
    rows = suite.run_suite(table_dir, [("random", "fifo"), ("random", "asha")], range(2), budget=0.02, max_trials=50)
    assert len(rows) == 4 and set(rows["task"]) == {"3945"}
    fifo = rows[rows["scheduler"] == "fifo"]
    # random:fifo runs whole 52-epoch trials: it stops at its 2% of the grid's compute (39 trials), not at 50
    assert (fifo["compute_share"] < 0.02 + 0.001).all() and (fifo["n_trials"] < 50).all()
    assert (rows["grid_median_regret_pts"] > 0).all() and len(rows["anytime_regret_pts"].iloc[0]) == len(ANYTIME_POINTS)


def hand_rows():
    """Two data sets, one seed, two methods; regret at every anytime point is constant."""
    def row(task, method, regret, worst):
        searcher, scheduler = method.split(":")
        return {"task": task, "searcher": searcher, "scheduler": scheduler, "seed": 0, "grid_median_regret_pts": worst,
                "anytime_regret_pts": [regret] * len(ANYTIME_POINTS)}
    return pd.DataFrame([row("a", "random:fifo", 2.0, 4.0), row("a", "hyperopt:asha", 1.0, 4.0),
                         row("b", "random:fifo", 1.0, 10.0), row("b", "hyperopt:asha", 3.0, 10.0)])


def test_normalized_regret_and_average_rank_give_known_answers():
    rows = hand_rows()
    assert suite.normalized(rows)[:, 0].tolist() == [0.5, 0.25, 0.1, 0.3]  # regret / the grid median's
    ranks = suite.average_rank(rows.assign(method=rows["searcher"] + ":" + rows["scheduler"]))
    assert ranks.loc["random:fifo"].iloc[0] == 1.5 and ranks.loc["hyperopt:asha"].iloc[0] == 1.5  # one win each
    cross = suite.cross_dataset(rows).set_index("method")
    assert cross.loc["hyperopt:asha", "norm_regret_at_10pct_mean"] == pytest.approx((0.25 + 0.3) / 2)
    assert cross.loc["hyperopt:asha", "vs_random_at_10pct_wins"] == 1 and cross.loc["hyperopt:asha", "vs_random_at_10pct_n"] == 2
    assert np.isfinite(cross.loc["hyperopt:asha", "vs_random_at_10pct_p"])


def test_the_suite_keeps_each_replay_as_it_ends_and_a_rerun_adds_only_what_is_missing(table_dir, tmp_path):
    methods = [("random", "fifo")]
    first = suite.run_suite(table_dir, methods, range(1), budget=0.02, max_trials=20, out=tmp_path)
    journal = tmp_path / suite.ROWS_FILE
    assert len(journal.read_text().splitlines()) == 1
    with open(journal, "a") as f:
        f.write('{"task": "3945", "searcher": "random", "sched')  # a run killed while writing its second row
    more = suite.run_suite(table_dir, methods, range(2), budget=0.02, max_trials=20, out=tmp_path)
    lines = journal.read_text().splitlines()
    assert len(lines) == 3 and lines[-1].startswith('{"task": "3945"') and list(more["seed"]) == [0, 1]
    fresh = suite.run_suite(table_dir, methods, range(2), budget=0.02, max_trials=20)  # no journal: all run
    same = ["seed", "n_trials", "compute_share", "final_regret_pts", "anytime_regret_pts"]
    assert more[same].equals(fresh[same]) and first[same].equals(fresh[same].iloc[:1])


def test_the_suite_command_resumes_and_refuses_other_settings_without_touching_the_folder(table_dir, tmp_path, capsys):
    from experiments import replay

    out = tmp_path / "out"
    argv = ["--suite", "lcbench", "--tables", str(table_dir), "--methods", "random:fifo", "--budget", "0.02",
            "--max-trials", "20", "--workers", "1", "--out", str(out)]
    assert replay.main(argv + ["--seeds", "1"]) == 0
    assert {"rows.jsonl", "seeds.csv", "summary.csv", "summary.md", "suite.json"} <= {p.name for p in out.iterdir()}
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert replay.main(argv[:-4] + ["--budget", "0.05", "--out", str(out), "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "budget=0.02" in err and len(err.splitlines()) == 1
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert replay.main(argv + ["--seeds", "2"]) == 0
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2
    assert replay.main(["--suite", "lcbench", "--tables", str(tmp_path / "none"), "--out", str(out)]) == 2
