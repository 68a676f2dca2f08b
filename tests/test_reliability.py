"""Reliability: failures retried and recorded, device memory released as trials end, and a
run killed with SIGKILL resumed without losing or rerunning anything that had finished."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from core import records
from core.rules import Objective, last_attempt
from experiments.checkpoints import keep_only_the_pick
from experiments.plan import Method
from experiments.scoring import summarize_method
from experiments.tune_adapter import trial_statuses, trials_with_results
from tests.analytic import TASK as ANALYTIC
from tests.conftest import ROOT
from tests.memory import watch_release
from tests.tuning import collect
from tests.tuning import tune as tune_one
from trainables import base, get_task

RESOURCES = {"cpu": 1, "gpu": 0}


# --- failures --------------------------------------------------------------------------------
def test_an_out_of_memory_error_is_retried_by_ray_and_the_trial_finishes(ray_session, tmp_path):
    task = dataclasses.replace(ANALYTIC, space={"x": (1, 3), "learning_rate": (1e-3,), "act": ("relu",), "epochs": (2,)})
    marks = tmp_path / "marks"
    marks.mkdir()
    # x=3 raises torch's OutOfMemoryError on its first attempt only (a transient OOM)
    fixed = {"oom_once_x": (3,), "oom_marks": str(marks)}
    tuned = tune_one(task, "grid", "fifo", 0, tmp_path / "a", resources=RESOURCES, fixed_config=fixed, max_failures=2)
    trials, curves, _ = collect(tuned, task, "grid", "fifo", 0)
    assert [t["status"] for t in trials] == [records.COMPLETED, records.COMPLETED]
    assert (marks / "3").exists()  # it did fail once
    assert sorted(c["epoch"] for c in curves if c["trial_id"] == trials[1]["trial_id"]) == [1, 2]  # no duplicates
    # without retries the same error is recorded (status oom: it ran out of memory), and the run goes on
    (marks / "3").unlink()
    tuned = tune_one(task, "grid", "fifo", 0, tmp_path / "b", resources=RESOURCES, fixed_config=fixed, max_failures=0)
    trials, _, _ = collect(tuned, task, "grid", "fifo", 0)
    assert [t["status"] for t in trials] == [records.COMPLETED, records.OUT_OF_MEMORY]
    assert "OutOfMemoryError" in trials[1]["error"] or "out of memory" in trials[1]["error"]


def test_a_run_where_a_quarter_of_the_trials_raise_finishes_with_every_failure_recorded(ray_session, tmp_path):
    task = dataclasses.replace(ANALYTIC, space={"x": (1, 2, 3, 4), "learning_rate": (1e-3,), "act": ("relu", "tanh"),
                                                "epochs": (2,)})
    # x=2 always raises: 2 of the 8 trials; Ray retries each once, then records the error
    tuned = tune_one(task, "grid", "fifo", 0, tmp_path, resources=RESOURCES, fixed_config={"fail_x": (2,)}, max_failures=1)
    trials, _, _ = collect(tuned, task, "grid", "fifo", 0)
    failed = [t for t in trials if t["status"] == records.FAILED]
    assert len(trials) == 8 and len(failed) == 8 // 4
    assert all("x=2 is set to fail" in t["error"] for t in failed)
    summary = summarize_method(task, Method("grid", "fifo", 0), trials, tuned.wall_seconds, {}, None, 0.0)
    assert summary["n_failed"] == 2
    for trial in failed:  # Ray's own record: two attempts (the first and one retry)
        error_file = next((tmp_path / "grid-fifo-s0").glob(f"trial_{trial['trial_id']}/error.txt"))
        assert error_file.read_text().count("Failure #") == 2


def test_only_the_last_attempt_of_a_restarted_trial_counts():
    reports = [{"epoch": 1, "v": "a"}, {"epoch": 2, "v": "b"}, {"epoch": 1, "v": "c"}, {"epoch": 2, "v": "d"},
               {"epoch": 3, "v": "e"}]
    assert [r["v"] for r in last_attempt(reports)] == ["c", "d", "e"]
    assert last_attempt(reports[:2]) == reports[:2] and last_attempt([]) == []


# --- device memory -----------------------------------------------------------------------------
@pytest.fixture
def breast_cancer_trainable():
    task = get_task("breast_cancer").for_budget("smoke")
    config = {**{name: values[-1] for name, values in task.space.items()}, "seed": 0}
    trainable = task.load_trainable()(config=config)
    yield trainable
    trainable.stop()


def test_a_trial_that_ends_gives_its_device_memory_back(breast_cancer_trainable, monkeypatch, tmp_path):
    trainable = breast_cancer_trainable
    result = trainable.train()
    weights, alive_at_release = watch_release(monkeypatch, trainable._run)
    trainable.save_checkpoint(str(tmp_path))  # Tune saves as a trial ends (finished or stopped by ASHA)
    assert alive_at_release == [False] and weights() is None  # weights gone, then the cache emptied
    # the checkpoint holds what scoring needs, in files whose reading runs no code
    assert sorted(p.name for p in tmp_path.iterdir()) == [base.WEIGHTS_FILE, base.RNG_FILE, base.META_FILE]
    weights, rng, meta = base.read_checkpoint(str(tmp_path))
    assert meta["epoch"] == result["epoch"] and meta["best"] == result["best_val_accuracy"]
    assert set(weights) == set(trainable._best_model) and all(t.device.type == "cpu" for t in weights.values())
    monkeypatch.undo()


def test_a_checkpoint_restores_on_the_cpu_and_never_unpickles(breast_cancer_trainable, tmp_path):
    """Restoring (every retry and --resume) reads to the CPU: a map_location of the trial's GPU
    put the CPU generator's state on the GPU and set_rng_state raised. And a pickle dropped
    into the folder (a tampered run) is never loaded."""
    trainable = breast_cancer_trainable
    result = trainable.train()
    trainable.save_checkpoint(str(tmp_path))
    rng_at_save = torch.get_rng_state()
    (tmp_path / "state.pt").write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")  # what torch.load would execute
    torch.rand(100)  # move the generator on
    restored = type(trainable)(config=dict(trainable.config))
    restored.load_checkpoint(str(tmp_path))
    assert torch.equal(torch.get_rng_state(), rng_at_save)
    assert restored._epoch == result["epoch"] and restored._best == result["best_val_accuracy"]
    assert all(t.device.type == "cpu" for t in restored._best_model.values())
    assert all(torch.equal(restored._best_model[k], v) for k, v in trainable._best_model.items())
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()
    restored.stop()


@pytest.mark.parametrize("path", ["reset_config", "cleanup"])
def test_reuse_and_cleanup_give_device_memory_back(breast_cancer_trainable, monkeypatch, path):
    trainable = breast_cancer_trainable
    trainable.train()
    weights, alive_at_release = watch_release(monkeypatch, trainable._run)
    if path == "reset_config":  # Tune reuses the worker for the next trial
        assert trainable.reset_config(dict(trainable.config))
    else:  # Tune ends the worker
        trainable.cleanup()
    assert alive_at_release == [False] and weights() is None


# --- kill and resume ---------------------------------------------------------------------------
def _run_all(args, log, **kwargs):
    # output to a file: a pipe nobody reads could fill and stall the run
    return subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
                            **kwargs)


def resume_to_the_end(run_dir) -> None:
    """``run_all.py --resume run_dir`` in a real process: it exits 0 and the run is finished."""
    resumed = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(run_dir)], check=False, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert json.loads((Path(run_dir) / "run.json").read_text())["status"] == "finished"


def kill_when(args, task_dir, method: str, log_path, condition, poll: float = 0.05) -> dict:
    """Start run_all.py with ``args`` and kill -9 it (the driver and all it started, at once) as soon as
    ``condition`` holds of the trial statuses Tune last saved for ``method``; those statuses."""
    with open(log_path, "w") as log:
        process = _run_all(args, log, start_new_session=True)
        deadline, killed_with = time.time() + 300, None
        while time.time() < deadline and process.poll() is None:
            folders = list(Path(task_dir).glob(f"*/tune/{method}"))
            states = trial_statuses(folders[0]) if folders else {}
            if states and condition(states):
                os.killpg(process.pid, signal.SIGKILL)
                killed_with = states
                break
            time.sleep(poll)
        process.wait(timeout=60)
    assert killed_with is not None, "never caught as wanted: " + Path(log_path).read_text()[-2000:]
    return killed_with


@pytest.mark.slow
def test_a_run_killed_mid_method_resumes_without_rerunning_finished_trials(smoke_run, tmp_path):
    results = tmp_path / "results"
    args = ["--task", "breast_cancer", "--budget", "smoke", "--methods", "grid:fifo,random:fifo,bayesopt:asha",
            "--results-dir", str(results), "--monitor-interval", "0.2"]
    killed_with = kill_when(args, results / "breast_cancer", "random-fifo-s0", tmp_path / "killed-run.log",
                            lambda states: "TERMINATED" in states.values() and set(states.values()) != {"TERMINATED"})
    (run_dir,) = (results / "breast_cancer").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    finished_before = {t for t, s in killed_with.items() if s == "TERMINATED"}
    method_dir = run_dir / "tune" / "random-fifo-s0"
    results_before = {t: (method_dir / f"trial_{t}" / "result.json").read_bytes() for t in finished_before}
    grid_rows_before = pd.read_csv(run_dir / "trials.csv")

    resumed = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(run_dir)], check=False, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming random-fifo-s0" in resumed.stdout
    assert "Restoring the run" not in resumed.stdout + resumed.stderr  # Tune's INFO line: ours says it (issue 25)

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and len(info["resumed_at"]) == 1
    trials = pd.read_csv(run_dir / "trials.csv")
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(zip(summary["searcher"], summary["scheduler"])) == [("grid", "fifo"), ("random", "fifo"),
                                                                     ("bayesopt", "asha")]
    # the grid method finished before the kill: its rows are kept exactly
    pd.testing.assert_frame_equal(trials[trials["searcher"] == "grid"].reset_index(drop=True),
                                  grid_rows_before[grid_rows_before["searcher"] == "grid"].reset_index(drop=True))
    # zero finished trials rerun: their Tune results were not touched
    for trial_id, before in results_before.items():
        assert (method_dir / f"trial_{trial_id}" / "result.json").read_bytes() == before, trial_id
    # the same trials as an uninterrupted run with the same seed (grid and random are deterministic)
    reference = pd.read_csv(smoke_run / "trials.csv")
    config = [f"config/{n}" for n in get_task("breast_cancer").for_budget("smoke").space]
    reference = reference[reference["scheduler"] == "fifo"]  # the smoke run also has random:asha
    for searcher in ("grid", "random"):
        mine = sorted(map(tuple, trials.loc[trials["searcher"] == searcher, config].to_numpy().tolist()))
        theirs = sorted(map(tuple, reference.loc[reference["searcher"] == searcher, config].to_numpy().tolist()))
        assert mine == theirs, searcher
    # the resumed monitor continues the run's timeline: it never runs backwards
    resources = pd.read_csv(run_dir / "resources.csv")
    assert resources["wall_seconds"].is_monotonic_increasing and resources["time"].is_monotonic_increasing
    random_trials = trials[trials["searcher"] == "random"]
    assert (random_trials["status"] == records.COMPLETED).all()
    curves = pd.read_csv(run_dir / "curves.csv")
    for row in random_trials.itertuples():  # one attempt's epochs per trial, 1..n
        epochs = sorted(curves.loc[(curves["searcher"] == "random") & (curves["trial_id"] == row.trial_id), "epoch"])
        assert epochs == list(range(1, row.epochs + 1))
    assert summary["test_accuracy"].notna().all()
    assert (run_dir / "summary.md").is_file() and (run_dir / "plots").is_dir()


@pytest.mark.slow
def test_a_budgeted_run_killed_mid_method_spends_only_the_rest_of_its_budget(tmp_path):
    """--time-budget 6s of a task whose epoch costs are exact (tests/budget_task.py), killed with SIGKILL
    once five trials have ended (about half the budget), then --resume: the compute counted before the
    kill is in Tune's snapshot (experiments.budget), so the method ends near 6 s, not 6 s more."""
    results = tmp_path / "results"
    budget = 6.0
    args = ["--task", str(ROOT / "tests" / "budget_task.py"), "--methods", "random:fifo", "--time-budget", "6s",
            "--results-dir", str(results), "--max-concurrent", "2", "--monitor-interval", "0.2"]
    kill_when(args, results / "analytic_budget", "random-fifo-s0", tmp_path / "killed.log",
              lambda states: sum(s == "TERMINATED" for s in states.values()) >= 5)
    (run_dir,) = (results / "analytic_budget").iterdir()
    resumed = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(run_dir)], check=False,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    summary = pd.read_csv(run_dir / "summary.csv")
    largest_epoch = 0.55  # x = 5, tanh
    # the curves hold each trial's last attempt: the epochs of the two trials running at the kill were
    # counted before it and trained again after (at most 3 epochs each), so the tables may show less
    spent = summary["compute_spent"].iloc[0]
    assert budget - 2 * 3 * largest_epoch <= spent < budget + 2 * largest_epoch, spent
    assert summary["compute_budget"].iloc[0] == budget


def test_resume_refuses_a_finished_run_and_changes_nothing(smoke_run):
    before = {p.name: p.stat().st_mtime for p in smoke_run.iterdir()}
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(smoke_run)], check=False, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "has finished; there is nothing to resume" in out.stderr
    assert {p.name: p.stat().st_mtime for p in smoke_run.iterdir()} == before


def test_resume_takes_no_other_settings(smoke_run):
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--resume", str(smoke_run), "--seeds", "3"], check=False,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--resume takes no settings that change results" in out.stderr


# --- results are never half-written -------------------------------------------------------------
@pytest.mark.parametrize("writer", ["csv", "json"])
def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, monkeypatch, writer):
    path = tmp_path / ("trials.csv" if writer == "csv" else "run.json")

    def write(rows):
        if writer == "csv":
            records.write_csv(path, ["a", "b"], rows)
        else:
            records.write_json(path, rows)

    write([{"a": 1, "b": 2}])
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the new content is written, then syncing fails
    with pytest.raises(OSError):
        write([{"a": 3, "b": 4}] * 1000)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # readable like any other file


def test_asha_keeps_its_rungs_across_a_restore(ray_session, tmp_path):
    from ray import tune

    tuned = tune_one(ANALYTIC, "random", "asha", 0, tmp_path, num_samples=8, resources=RESOURCES)
    trial_ids = {trial.trial_id for trial, _ in trials_with_results(tuned.results)}
    # what --resume does: the scheduler comes back from tuner.pkl, as it was before the first trial
    tuner = tune.Tuner.restore(str(tmp_path / "random-asha-s0"), trainable=tune.with_resources(ANALYTIC.load_trainable(),
                                                                                                 RESOURCES))
    scheduler = tuner._local_tuner._tune_config.scheduler
    assert all(not recorded for bracket in scheduler._brackets for _, recorded in bracket._rungs)
    tuner.fit()
    # after the restore it holds every trial's result at the first rung (epoch 1), as before
    first_rung = [recorded for bracket in scheduler._brackets for milestone, recorded in bracket._rungs
                  if milestone == ANALYTIC.grace_period]
    assert set().union(*first_rung) == trial_ids


# --- checkpoints on disk -------------------------------------------------------------------------
def test_within_a_method_only_the_pick_keeps_its_checkpoint(ray_session, tmp_path):
    from core.rules import select_trial

    task = dataclasses.replace(ANALYTIC, space={**ANALYTIC.space, "x": (1, 2, 3, 4, 5)})
    tuned = tune_one(task, "random", "asha", 0, tmp_path, num_samples=10, max_concurrent=2, keep_checkpoints="picks",
                     fixed_config={"fail_x": (5,)})
    trials, _, results = collect(tuned, task, "random", "asha", 0)
    pick = select_trial(trials, Objective())["trial_id"]
    kept = {p.parent.name for p in (tmp_path / "random-asha-s0").glob("trial_*/checkpoint_*")}
    assert f"trial_{pick}" in kept  # Tune's callback kept the pick's (and any trial tied with it)
    keep_only_the_pick(results, pick)  # as the runner does once the pick is scored
    left = sorted(p.parent.name for p in (tmp_path / "random-asha-s0").glob("trial_*/checkpoint_*"))
    assert left == [f"trial_{pick}"]  # the pick's, and only it


class _Fs:
    """pyarrow's file system calls that experiments.checkpoints makes, on local folders."""

    def get_file_info(self, path):
        from pyarrow.fs import FileInfo, FileType

        return FileInfo(path, FileType.Directory if Path(path).is_dir() else FileType.NotFound)

    def delete_dir(self, path):
        import shutil

        shutil.rmtree(path)


def test_trials_tied_with_the_incumbent_keep_their_checkpoints_whatever_the_order(tmp_path):
    """A repeated configuration ties exactly, and select_trial breaks ties by an order that Tune's live
    list and its ResultGrid do not share after a resume: keeping one of the tied trials once deleted
    the pick's weights (CI: FileNotFoundError scoring the pick). Every tied trial keeps its checkpoint
    until the pick is scored; then only the pick's stays."""
    from types import SimpleNamespace

    from experiments.checkpoints import KeepSelectable

    def trial(trial_id, best, epoch):
        folder = tmp_path / trial_id / "checkpoint_000000"
        folder.mkdir(parents=True)
        return SimpleNamespace(trial_id=trial_id, last_result={"best_val_accuracy": best, "epoch": epoch},
                               checkpoint=SimpleNamespace(filesystem=_Fs(), path=str(folder)))

    worse, tied_a, tied_b, shorter = trial("w", 0.80, 3), trial("a", 0.89, 3), trial("b", 0.89, 3), trial("s", 0.89, 1)
    trials = [worse, tied_b, tied_a, shorter]
    for order in ([worse, tied_a, tied_b, shorter], [tied_b, shorter, worse, tied_a]):
        for t in trials:
            Path(t.checkpoint.path).mkdir(parents=True, exist_ok=True)
        keep = KeepSelectable(Objective())
        for t in order:
            keep.on_trial_complete(0, trials, t)
        restored = KeepSelectable(Objective())  # what --resume does with Tune's snapshot of it
        restored.set_state(keep.get_state())
        assert set(restored.incumbents) == {"a", "b"}
        assert {p.parent.name for p in tmp_path.glob("*/checkpoint_*")} == {"a", "b"}
    old = KeepSelectable(Objective())  # a snapshot from before ties were kept: (key with start order, id)
    old.set_state({"incumbent": (keep.incumbents["a"][:2] + (-3,), "a")})
    assert old.incumbents == {"a": keep.incumbents["a"]}
    results = {t.trial_id: SimpleNamespace(checkpoint=t.checkpoint) for t in trials}
    keep_only_the_pick(results, "b")
    assert {p.parent.name for p in tmp_path.glob("*/checkpoint_*")} == {"b"}


def test_a_run_leaves_the_runs_best_pick_and_the_recommended_methods_in_safe_formats(smoke_run):
    summary = pd.read_csv(smoke_run / "summary.csv")
    left = list((smoke_run / "tune").glob("*/trial_*/checkpoint_*"))
    best = summary.iloc[summary["best_val_accuracy"].to_numpy().argmax()]  # ties: the earlier method
    recommended = json.loads((smoke_run / "run.json").read_text())["recommendation"]["method"]
    mine = summary[summary["searcher"] + ":" + summary["scheduler"] == recommended].iloc[0]
    assert sorted(p.parent.name for p in left) == sorted({f"trial_{best['best_trial_id']}",
                                                          f"trial_{mine['best_trial_id']}"}), left
    for folder in left:
        assert sorted(p.name for p in folder.iterdir()) == sorted([base.WEIGHTS_FILE, base.RNG_FILE, base.META_FILE])


def test_a_second_resume_of_a_run_in_use_is_refused_and_writes_nothing(smoke_run, tmp_path, capsys):
    import shutil

    import run_all

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir, symlinks=True)
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from experiments import runlock; "
                               f"runlock.acquire({str(run_dir)!r}); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the first resume (or the run itself) holds the folder
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
        assert run_all.main(["--resume", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another process (pid {holder.pid})" in err[0]
        assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    finally:
        holder.kill()
        holder.wait()


def test_a_trial_in_a_reused_worker_reports_its_own_peak_host_memory(breast_cancer_trainable):
    """peak_rss_mb is the trial's (Linux: VmHWM, reset as each trial starts), not the worker's
    lifetime peak: 400 MB held and freed before the trial do not count."""
    import numpy as np

    trainable = breast_cancer_trainable
    held = np.ones(400 * 2**20 // 8)  # the worker's earlier peak
    held[:] = 2.0
    from trainables.memory import peak_rss_mb

    earlier = peak_rss_mb()
    del held
    trainable.reset_config(dict(trainable.config))
    result = trainable.step()
    assert result["peak_rss_mb"] < earlier - 300, (result["peak_rss_mb"], earlier)
