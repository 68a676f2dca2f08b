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
    assert len(table.curves) == 1944 and all(len(c[0].epoch_seconds) == 50 for c in table.curves.values())
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
    # random:fifo runs whole 50-epoch trials: it stops at its 2% of the grid's compute (~39 trials), not at 50
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


def test_with_reuses_another_folders_rows_and_refuses_one_made_otherwise(table_dir, tmp_path, capsys):
    import gzip

    from experiments import replay

    common = ["--suite", "lcbench", "--tables", str(table_dir), "--budget", "0.02", "--max-trials", "20",
              "--workers", "1", "--seeds", "2"]
    assert replay.main(common + ["--methods", "random:fifo", "--out", str(tmp_path / "a")]) == 0
    committed = tmp_path / "docs-a"  # as under docs/: the rows gzipped
    committed.mkdir()
    (committed / "suite.json").write_bytes((tmp_path / "a" / "suite.json").read_bytes())
    with gzip.open(committed / "rows.jsonl.gz", "wt") as f:
        f.write((tmp_path / "a" / "rows.jsonl").read_text())
    out = tmp_path / "b"
    assert replay.main(common + ["--methods", "random:fifo,random:asha", "--with", str(committed),
                                 "--out", str(out)]) == 0
    new = [line for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(new) == 2 and all('"scheduler": "asha"' in line for line in new)  # only what was missing ran
    seeds = pd.read_csv(out / "seeds.csv")
    assert sorted(seeds["scheduler"]) == ["asha", "asha", "fifo", "fifo"]  # the report covers both
    fifo = pd.read_csv(tmp_path / "a" / "seeds.csv")
    assert seeds[seeds["scheduler"] == "fifo"]["final_regret_pts"].tolist() == fifo["final_regret_pts"].tolist()
    capsys.readouterr()
    before = (out / "rows.jsonl").read_bytes()
    other = [a if a != "0.02" else "0.05" for a in common]
    assert replay.main(other + ["--methods", "random:fifo", "--with", str(committed), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "budget=0.02" in err and len(err.splitlines()) == 1 and not (tmp_path / "c").exists()
    assert replay.main(common + ["--methods", "random:fifo", "--with", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert (out / "rows.jsonl").read_bytes() == before


def test_table_epoch_one_is_yahpo_epoch_two_the_first_trained_epoch(table_dir):
    """YAHPO Gym's FAQ: LCBench's epoch 1 is the untrained network; tables hold epochs 2..51."""
    from experiments.replay import load_table

    table = load_table(table_dir / "3945")
    surrogate = lcbench.Surrogate()
    configs = lcbench.grid_rows()[[0, 777, 1943]]
    for yahpo_epoch, table_epoch in ((2, 1), (51, 50)):
        x = np.column_stack([np.full(len(configs), yahpo_epoch), configs])
        expected = np.clip(surrogate.predict("3945", x)["val_accuracy"] / 100.0, 0, 1)
        got = [table.curves[table.key(dict(zip([n for n in lcbench.CONT_NAMES if n != "epoch"], row),
                                           epochs=50))][0].val["val_accuracy"][table_epoch - 1] for row in configs]
        assert np.allclose(got, expected, atol=1e-12), (yahpo_epoch, table_epoch)
    x = np.column_stack([np.full(len(configs), 1), configs])  # ... and YAHPO's epoch 1 is in no table column
    untrained = np.clip(surrogate.predict("3945", x)["val_accuracy"] / 100.0, 0, 1)
    first = [c[0].val["val_accuracy"][0] for c in table.curves.values()]
    assert not np.isin(untrained, first).any()


def test_the_cache_key_changes_with_the_epochs_kept(monkeypatch):
    before = suite.default_tables_dir()
    monkeypatch.setattr(lcbench, "YAHPO_EPOCHS", tuple(range(1, 51)))
    assert suite.default_tables_dir() != before  # old tables are rebuilt, never mixed with new ones


UNTRAINED_FIRST_RUNG_TASK = "7593"  # YAHPO epoch 1: Spearman -0.05 with the best; epoch 2: 0.68


def test_the_fidelity_check_flags_a_table_built_on_the_untrained_epoch(tmp_path):
    from experiments.replay import fidelity, load_table

    task = UNTRAINED_FIRST_RUNG_TASK
    lcbench.write_table(lcbench.Surrogate(), task, tmp_path / "old" / task, yahpo_epochs=tuple(range(1, 51)))
    lcbench.write_table(lcbench.Surrogate(), task, tmp_path / "new" / task)
    old = fidelity.fidelity(load_table(tmp_path / "old" / task))
    new = fidelity.fidelity(load_table(tmp_path / "new" / task))
    assert list(old["rung"]) == list(new["rung"]) == [1, 3, 9, 27]  # grace 1, eta 3, 50 epochs
    assert fidelity.first_rung_flagged(old) and not fidelity.first_rung_flagged(new)
    assert old["spearman"].iloc[0] < fidelity.FIRST_RUNG_MIN_SPEARMAN <= new["spearman"].iloc[0]
    assert not old["best_survives"].iloc[0] and new["best_survives"].iloc[0]
    lines = fidelity.fidelity_lines(pd.concat([old.assign(task="old"), new.assign(task="new")]))
    assert any(line.startswith("**WARNING: on 1 of 2 table(s)") and "old" in line for line in lines)


def test_fidelity_of_a_hand_made_table_gives_known_ranks():
    """Four configurations with 9-epoch curves: at epoch 1 the order is the reverse of the final one
    for three of them; rungs at 1 and 3 (grace 1, eta 3)."""
    from experiments.replay import fidelity
    from core.rules import Objective
    from experiments.replay.table import Curve, Table

    finals = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    first = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.05}
    curves = {}
    for name, end in finals.items():
        val = np.linspace(first[name], end, 9)
        curves[(name,)] = [Curve(seed=0, val={"val_accuracy": val}, epoch_seconds=np.ones(9), test=None,
                                 objective=Objective())]
    table = Table(task="hand", space={"x": list(finals)}, epochs_param="epochs", metric="val_accuracy", mode="max",
                  grace_period=1, reduction_factor=3, max_concurrent=1, num_samples=4, curves=curves)
    frame = fidelity.fidelity(table)
    assert list(frame["rung"]) == [1, 3] and list(frame["keep"]) == [1, 1]
    # ranks at epoch 1 (1 = best): c, b, a, d against final a, b, c, d
    assert frame["spearman"].iloc[0] == pytest.approx(np.corrcoef([3, 2, 1, 4], [1, 2, 3, 4])[0, 1])
    assert frame["best_rank"].iloc[0] == 3 and not frame["best_survives"].iloc[0]
    assert fidelity.first_rung_flagged(frame)


def test_the_halves_split_the_sorted_tables_by_index(tmp_path):
    for name in ("30", "10", "20", "40", "50"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text("{}")
    assert suite.tables_of(tmp_path, "even") == ["10", "30", "50"]
    assert suite.tables_of(tmp_path, "odd") == ["20", "40"]
    assert suite.tables_of(tmp_path) == ["10", "20", "30", "40", "50"]


def test_the_summary_names_the_half_the_methods_that_ended_early_and_the_fidelity(table_dir, tmp_path):
    from experiments import replay

    out = tmp_path / "out"
    argv = ["--suite", "lcbench", "--tables", str(table_dir), "--methods", "random:fifo", "--budget", "0.05",
            "--max-trials", "30", "--workers", "1", "--out", str(out), "--seeds", "1", "--half", "even"]
    assert replay.main(argv) == 0
    text = (out / "summary.md").read_text()
    assert "the even half (1 tables" in text
    # random:fifo hits the 30-trial guard before 5% of the grid's compute (~97 trials): said, not hidden
    assert ("- random:fifo: 1 of 1 replays ended before 5% (compute share median 1.8%, 1 at the 30-trial guard, "
            "0 with the searcher out of configurations)") in text
    assert "Fidelity sanity over 1 table(s)" in text and "| 1 | 0." in text
    datasets = pd.read_csv(out / "datasets.csv")
    assert datasets["first_rung_spearman"].iloc[0] >= 0.5 and bool(datasets["grid_best_survives_first_cut"].iloc[0])
    assert set(pd.read_csv(out / "fidelity.csv")["rung"]) == {1, 3, 9, 27}


def test_the_suites_progress_is_plain_lines_when_piped(table_dir, capsys):
    suite.run_suite(table_dir, [("random", "fifo")], range(2), budget=0.01, max_trials=10, progress=True)
    err = capsys.readouterr().err  # not a terminal
    assert "\r" not in err and err.strip().splitlines()[-1].startswith("replays: 2/2 done, elapsed ")


def test_a_full_disk_stops_the_suite_in_one_line_and_the_same_command_continues(table_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    """The second replay's row meets a full disk as it is appended to rows.jsonl: one line, exit 1, the
    first row kept whole; rerun, the suite replays only the missing one."""
    import errno
    import json
    import types

    from experiments import replay

    out = tmp_path / "out"
    argv = ["--suite", "lcbench", "--tables", str(table_dir), "--methods", "random:fifo", "--budget", "0.02",
            "--max-trials", "20", "--workers", "1", "--out", str(out), "--seeds", "2"]
    rows = []

    def dumps(obj, **kwargs):
        if obj.get("searcher") == "random" and rows:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / suite.ROWS_FILE))
        rows.append(obj)
        return json.dumps(obj, **kwargs)

    monkeypatch.setattr(suite, "json", types.SimpleNamespace(dumps=dumps, loads=json.loads,
                                                             JSONDecodeError=json.JSONDecodeError))
    capsys.readouterr()
    assert replay.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "rerun the same command" in err[0], err
    lines = (out / suite.ROWS_FILE).read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seed"] == 0
    monkeypatch.undo()
    assert replay.main(argv) == 0
    assert [json.loads(line)["seed"] for line in (out / suite.ROWS_FILE).read_text().splitlines()] == [0, 1]
