"""The command line end to end: a smoke run's folder, `--help`, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

import run_all
from core import records
from experiments.spec import SpecError
from tests.conftest import ROOT
from trainables import get_task

SMOKE = get_task("breast_cancer").for_budget("smoke")


def test_smoke_run_writes_the_whole_run_folder(smoke_run):
    names = {p.name for p in smoke_run.iterdir()}
    assert {"run.json", "tune", "trials.csv", "curves.csv", "summary.csv", "summary.md", "resources.csv",
            "plots", "tensorboard"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    # the default methods: the baselines, the proposed methods, the control random:asha, and the method the
    # evidence recommends for the run's budget (4 trials of 8 configurations: the 25% row, bayesopt:fifo)
    methods = ["grid-fifo-s0", "random-fifo-s0", "random-asha-s0", "hyperopt-asha-s0", "bayesopt-asha-s0",
               "bayesopt-fifo-s0"]
    assert sorted(p.name for p in (smoke_run / "tune").iterdir()) == sorted(methods)
    for method in methods:
        folder = smoke_run / "tune" / method
        assert list(folder.glob("experiment_state-*.json")), f"{method}: no Tune experiment state"
        assert list(folder.glob("trial_*/events.out.tfevents.*")), f"{method}: no TensorBoard events"


def test_run_json_keeps_provenance(smoke_run):
    info = json.loads((smoke_run / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["spec"]["task"] == "breast_cancer" and info["spec"]["budget"] == "smoke"
    assert info["resolved"]["grid_size"] == SMOKE.grid_size
    assert info["versions"]["ray"] and info["versions"]["torch"]
    assert "commit" in info["git"]
    assert info["device"]["cpu_count"] >= 1 and info["device"]["gpus"] == []
    # every time the run folder shows is ISO 8601 in UTC, the methods' starts too
    iso = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"
    times = [info["started_at"], info["finished_at"], *info["methods_started"].values()]
    assert len(times) == 8 and all(re.match(iso, t) for t in times), times
    assert info["recommendation"]["method"] == "bayesopt:fifo" and info["recommendation"]["fraction"] == 0.5


def test_trials_csv(smoke_run):
    trials = pd.read_csv(smoke_run / "trials.csv")
    assert list(trials.columns) == list(records.trial_columns(SMOKE.space, "val_accuracy"))
    counts = trials.groupby(["searcher", "scheduler"]).size().to_dict()
    assert counts == {("grid", "fifo"): SMOKE.grid_size, ("random", "fifo"): 4, ("random", "asha"): 4,
                      ("hyperopt", "asha"): 4, ("bayesopt", "asha"): 4, ("bayesopt", "fifo"): 4}
    assert set(trials["status"]) <= {records.COMPLETED, records.STOPPED}
    assert (trials["epochs"] >= 1).all() and (trials["epochs"] <= trials["config/num_epochs"]).all()
    assert trials["best_val_accuracy"].between(0, 1).all()
    fifo = trials[trials["scheduler"] == "fifo"]
    assert (fifo["epochs"] == fifo["config/num_epochs"]).all()  # run to completion
    for name, values in SMOKE.space.items():
        assert set(trials[f"config/{name}"]) <= set(values)


def test_curves_csv(smoke_run):
    curves = pd.read_csv(smoke_run / "curves.csv")
    trials = pd.read_csv(smoke_run / "trials.csv")
    assert list(curves.columns) == list(records.curve_columns(records.CLASSIFICATION_METRICS))
    assert len(curves) == trials["epochs"].sum()  # one row per trial per epoch
    per_trial = curves.groupby("trial_id")["val_accuracy"].max()
    best = trials.set_index("trial_id")["best_val_accuracy"]
    assert (per_trial.sort_index() == best.sort_index()).all()
    assert (curves["wall_seconds"] >= 0).all() and curves["val_auc"].between(0, 1).all()


def test_summary_csv_and_md(smoke_run):
    summary = pd.read_csv(smoke_run / "summary.csv")
    trials = pd.read_csv(smoke_run / "trials.csv")
    assert list(summary.columns) == list(records.summary_columns("val_accuracy", records.CLASSIFICATION_METRICS))
    assert list(zip(summary["searcher"], summary["scheduler"])) == [
        ("grid", "fifo"), ("random", "fifo"), ("random", "asha"), ("hyperopt", "asha"), ("bayesopt", "asha"),
        ("bayesopt", "fifo")]
    for column in ("test_accuracy", "test_f1", "test_auc", "best_val_accuracy"):
        assert summary[column].between(0, 1).all(), column
    assert summary["gpu_seconds"].isna().all()  # no GPU: absent, not zero
    assert (summary["wall_seconds"] > 0).all() and (summary["trial_seconds"] > 0).all()
    for row in summary.itertuples():
        mine = trials[(trials["searcher"] == row.searcher) & (trials["scheduler"] == row.scheduler)]
        assert row.n_trials == len(mine) and row.epochs_trained == mine["epochs"].sum()
        assert row.best_val_accuracy == mine["best_val_accuracy"].max()
        assert row.best_trial_id in set(mine["trial_id"])
        assert set(json.loads(row.best_config)) == set(SMOKE.space)
    text = (smoke_run / "summary.md").read_text()
    assert "| grid | fifo | 0 |" in text and "test_accuracy" in text and "grid_epochs_share" in text
    # every ASHA method next to both controls, with n stated (one seed: no test, said so)
    for method in ("hyperopt:asha", "bayesopt:asha"):
        for control in ("random:fifo", "random:asha"):
            assert f"| {method} | {control} | 1 |" in text
    assert "no test (1 seed)" in text
    assert "test_loss" in text  # every metric the task evaluates is scored on the test split


def test_a_report_states_no_number_its_run_did_not_measure():
    """summary.md's reproducibility note once quoted epochs from some other run in every report."""
    from analysis.report import reproducibility

    for concurrency in (None, 1, 7):
        numbers = set(re.findall(r"\d+", reproducibility(concurrency)))
        assert numbers <= {"1", str(concurrency)}, numbers


def _run_cli(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_help_imports_neither_torch_nor_ray():
    code = ("import sys, run_all\n"
            "try:\n    run_all.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'ray', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr
    assert "--num-samples" in out.stdout


@pytest.mark.parametrize("args, expected", [
    (["--task", "mnist"], "unknown task 'mnist'; allowed: breast_cancer"),
    (["--methods", "grid,sobol"], "unknown searcher 'sobol'"),
    (["--methods", "random:pbt"], "unknown scheduler 'pbt'"),
    (["--methods", "grid,,random"], "is malformed"),
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--num-samples", "many"], "invalid int value: 'many'"),
    (["--seeds", "1,x"], "--seeds '1,x' does not parse"),
    (["--budget", "huge"], "unknown budget 'huge'"),
    (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
    (["--cpus-per-trial", "-1"], "--cpus-per-trial must be a positive number"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial must be in [0, 1]"),
    (["--gpus-per-trial", "-0.5"], "--gpus-per-trial must be in [0, 1]"),
    (["--gpu-id", "0", "--ray-address", "auto"], "--gpu-id pins a local run to one card"),
    (["--gpus-per-trial", "0.25"], "asks for a GPU, but none was found"),
    (["--gpu-id", "3"], "--gpu-id 3 does not exist; GPUs here: none"),
    (["--monitor-interval", "0"], "--monitor-interval must be a positive number"),
    (["--max-failures", "-1"], "--max-failures must be 0 or more"),
    (["--task", "imdb", "--data-dir", "no-such-folder", "--model", "MODEL"], "no-such-folder"),
    (["--task", "imdb", "--data-dir", "WRONG_SCHEMA", "--model", "MODEL"], "lacks column(s) text, label"),
    (["--task", "cifar10", "--data-dir", "WRONG_SCHEMA"], "lacks column(s)"),
    (["--task", "breast_cancer", "--data-dir", "WRONG_SCHEMA"], "does not take --data-dir"),
    (["--resume", "no-such-run"], "is not a run folder (no run.json)"),
    (["--resume", "WRONG_SCHEMA"], "is not a run folder (no run.json)"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, expected):
    import pandas as pd

    wrong = tmp_path / "wrong-schema"  # parquet files with columns no task reads
    wrong.mkdir()
    for split in ("train", "test"):
        pd.DataFrame({"sentence": ["a", "b"], "target": [0, 1]}).to_parquet(wrong / f"{split}.parquet")
    args = [str(wrong) if a == "WRONG_SCHEMA" else str(tmp_path) if a == "MODEL" else a for a in args]
    results = tmp_path / "results"
    before = sorted(p.name for p in tmp_path.iterdir())
    out = _run_cli([*args, "--results-dir", str(results)] if "--resume" not in args else args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert not results.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in wrong.iterdir()) == ["test.parquet", "train.parquet"]


def test_unwritable_results_dir_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = _run_cli(["--results-dir", str(blocker / "results")], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot be written" in out.stderr
    assert blocker.read_text() == "not a folder"


def test_run_folders_are_never_reused(tmp_path):
    from experiments.runner import create_run_dir

    folders = {create_run_dir(tmp_path, "breast_cancer") for _ in range(20)}
    assert len(folders) == 20 and all(f.is_dir() and not any(f.iterdir()) for f in folders)


@pytest.mark.slow
def test_piped_output_shows_progress_counts_and_where_to_look_next(tmp_path):
    out = _run_cli(["--budget", "smoke", "--methods", "grid:fifo,random:asha", "--results-dir", str(tmp_path / "r")],
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    # not a terminal: plain lines, no cursor tricks; the last of each method has the final counts
    assert not any("\r" in line or "\x1b[" in line for line in lines)
    grid = [line for line in lines if line.startswith("grid-fifo-s0: ")]
    assert grid[-1].startswith(f"grid-fifo-s0: {SMOKE.grid_size}/{SMOKE.grid_size} trials done, 0 running, ")
    assert f"{3 * SMOKE.grid_size} epochs, 0 errors, best val_accuracy 0." in grid[-1]  # epochs 2 and 4: 24 in all
    assert any(line.startswith("random-asha-s0: 4/4 trials done") for line in lines)
    (run_dir,) = (tmp_path / "r" / "breast_cancer").iterdir()
    assert any(line.startswith(f"  TensorBoard:         tensorboard --logdir {run_dir / 'tensorboard'}  (a run per method")
               for line in lines)
    assert f"  rebuild the report:  python -m analysis {run_dir}" in lines
    # Ray's notices that ask nothing of the user are gone (its token authentication stays on)
    assert "Token authentication is enabled" not in out.stderr and "Wrote the latest version" not in out.stderr


@pytest.mark.slow
def test_quiet_prints_only_the_table(tmp_path):
    out = _run_cli(["--budget", "smoke", "--methods", "grid:fifo", "--quiet", "--results-dir", str(tmp_path / "r")],
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    (run_dir,) = (tmp_path / "r" / "breast_cancer").iterdir()
    assert lines[0] == f"run folder: {run_dir}"  # quiet, but it says where the results are
    assert lines[1].startswith("| searcher | scheduler |") and len(lines) == 4  # header, rule, grid's row


def test_more_samples_than_configurations_is_said_and_repeats_are_counted():
    from experiments.plan import Method
    from experiments.runner import samples_note
    from experiments.scoring import summarize_method
    from experiments.spec import ExperimentSpec
    from trainables import get_task

    task = get_task("breast_cancer").for_budget("smoke")
    spec = ExperimentSpec(methods=(("grid", "fifo"), ("random", "fifo"), ("bayesopt", "asha")), budget="smoke")
    note = samples_note(spec, task, task.grid_size + 42)
    assert note.startswith(f"--num-samples {task.grid_size + 42} is above the {task.grid_size} configurations")
    assert "bayesopt tries each configuration once" in note and "random draw with replacement" in note
    assert samples_note(spec, task, task.grid_size) is None
    both = samples_note(ExperimentSpec(methods=(("shuffle", "fifo"), ("rungbo", "asha"))), task, task.grid_size + 1)
    assert "rungbo, shuffle try each configuration once" in both and "replacement" not in both
    assert samples_note(ExperimentSpec(methods=(("grid", "fifo"),)), task, 10**6) is None  # the grid samples nothing
    config = {f"config/{k}": v[0] for k, v in task.space.items()}
    trials = [{**config, "status": "completed", "epochs": 1, "train_seconds": 1.0, "peak_rss_mb": None,
               "peak_trial_gpu_mem_mb": None} for _ in range(3)]
    summary = summarize_method(task, Method("random", "fifo", 0), trials, 1.0, {}, None, 0.0)
    assert summary["n_repeats"] == 2  # three trials of one configuration


def test_a_seed_no_searcher_takes_is_refused_before_anything_is_written(tmp_path, capsys):
    results = tmp_path / "results"
    assert run_all.main(["--seeds", "0,99999999999999999999", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has a seed above 4294967295 (2**32 - 1)" in err[0]
    assert not results.exists()
    assert run_all.parse_spec(["--seeds", "4294967295"]).seeds == (4294967295,)  # the largest is fine


def test_resume_takes_display_flags_and_refuses_settings_that_change_results(tmp_path):
    assert run_all.parse_resume(["--resume", str(tmp_path), "--quiet"]) == (str(tmp_path), True)
    with pytest.raises(SpecError, match=r"--resume takes no settings that change results \(got --max-concurrent\)"):
        run_all.parse_resume(["--resume", str(tmp_path), "--quiet", "--max-concurrent", "3"])
