"""Resource monitor (with NVML replaced by a stand-in for two cards), GPU-seconds, TensorBoard files,
and the analysis package on a smoke run."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from analysis import NotARunFolder, load_run
from analysis.report import PLOTS, reproducibility, with_grid_comparison
from core.records import RESOURCE_COLUMNS
from experiments.gpus import visible_gpus
from experiments.monitor import ResourceMonitor
from experiments.plan import Method
from experiments.scoring import summarize_method
from tests.conftest import ROOT
from tests.fake_nvml import FakeNvml
from trainables import get_task
from core.rules import Objective


def test_monitor_samples_the_pinned_gpu_and_tags_the_method():
    fake = FakeNvml()  # two cards; the run is pinned to the second
    monitor = ResourceMonitor("t", interval_s=0.05, gpu=visible_gpus(fake, env={})[1], nvml=fake)
    with monitor:
        monitor.set_method("bayesopt", "asha", 3)
        time.sleep(0.4)
        monitor.set_method(None)
        time.sleep(0.15)
    n = len(monitor.rows())
    time.sleep(0.15)
    assert len(monitor.rows()) == n  # stopped with its block
    tagged = monitor.rows("bayesopt", "asha", 3)
    assert len(tagged) >= 3 and len(tagged) < n
    assert all(r["gpu_util"] == 70.0 and r["gpu_mem_mb"] > 1100 for r in tagged)  # card 1's, not card 0's
    assert fake.open == 0  # NVML opened once for the run and shut with the monitor
    assert all(r["cpu_percent"] >= 0 and r["rss_mb"] > 10 and r["n_processes"] >= 1 for r in tagged)
    assert set(RESOURCE_COLUMNS) <= set(tagged[0])


def test_a_card_nvml_cannot_open_leaves_the_gpu_columns_empty_and_keeps_cpu_and_memory(capsys):
    """The handle lookup fails (a card gone, a driver reloaded): one line, and every interval still
    gets its CPU and memory row (the sampler was built inside sample(), so each row was lost)."""

    class NoHandle(FakeNvml):
        def nvmlDeviceGetHandleByUUID(self, uuid):
            raise self.NVMLError("Unknown Error")

    fake = NoHandle()
    monitor = ResourceMonitor("t", interval_s=0.05, gpu=visible_gpus(fake, env={})[0], nvml=fake)
    with monitor:
        time.sleep(0.4)
    rows = monitor.rows()
    assert len(rows) >= 3
    assert all(r["gpu_util"] is None and r["gpu_mem_mb"] is None and r["rss_mb"] > 10 for r in rows)
    err = capsys.readouterr().err
    assert err.count("resource monitor: GPU 0 cannot be read through NVML (NVMLError: Unknown Error)") == 1
    assert fake.open == 0  # opened for the attempt, and shut


def test_without_a_gpu_the_gpu_fields_are_empty_not_zero():
    row = ResourceMonitor("t", gpu=None).sample()
    assert row["gpu_util"] is None and row["gpu_mem_mb"] is None
    assert row["cpu_percent"] is not None and row["rss_mb"] > 0


def test_gpu_seconds_are_trial_seconds_times_the_gpu_fraction():
    task = get_task("breast_cancer")
    trials = [{"train_seconds": 30.0, "status": "completed", "epochs": 3, "peak_rss_mb": 900.0, "peak_trial_gpu_mem_mb": 1500.0},
              {"train_seconds": 10.0, "status": "stopped", "epochs": 1, "peak_rss_mb": 800.0, "peak_trial_gpu_mem_mb": None}]
    samples = [{"gpu_util": 40.0, "gpu_mem_mb": 3000.0, "rss_mb": 2500.0},
               {"gpu_util": 80.0, "gpu_mem_mb": 3500.0, "rss_mb": 2600.0}]
    row = summarize_method(task, Method("grid", "fifo", 0), trials, 50.0, {}, None, 0.25, samples)
    assert row["trial_seconds"] == 40.0 and row["gpu_seconds"] == 10.0
    assert row["mean_gpu_util"] == 60.0 and row["peak_rss_mb"] == 2600.0
    # the whole card (NVML) and PyTorch's per-trial peak stay apart
    assert row["peak_card_gpu_mem_mb"] == 3500.0 and row["peak_trial_gpu_mem_mb"] == 1500.0
    cpu = summarize_method(task, Method("grid", "fifo", 0), trials, 50.0, {}, None, 0.0, [])
    assert cpu["gpu_seconds"] is None and cpu["mean_gpu_util"] is None and cpu["peak_rss_mb"] == 900.0


def test_the_run_records_resources_tagged_by_method(smoke_run):
    resources = pd.read_csv(smoke_run / "resources.csv")
    assert list(resources.columns) == list(RESOURCE_COLUMNS)
    assert resources["gpu_util"].isna().all() and resources["gpu_mem_mb"].isna().all()  # no GPU here
    assert set(resources["searcher"].dropna()) == {"grid", "random", "hyperopt", "bayesopt"}
    assert (resources["rss_mb"] > 0).all() and resources["wall_seconds"].is_monotonic_increasing
    summary = pd.read_csv(smoke_run / "summary.csv")
    assert (summary["peak_rss_mb"] > 0).all() and summary["mean_gpu_util"].isna().all()


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_tensorboard_has_trial_metrics_and_the_resource_timeline(smoke_run):
    trial_tags = _scalars(smoke_run / "tune" / "grid-fifo-s0")
    for metric in ("val_accuracy", "val_f1", "val_auc", "val_loss"):
        assert any(tag.endswith(metric) for tag in trial_tags), (metric, sorted(trial_tags)[:10])
    assert {"resources/cpu_percent", "resources/rss_mb"} <= _scalars(smoke_run / "tensorboard")


def test_load_run_gives_dataframes(smoke_run):
    run = load_run(smoke_run)
    assert run.methods == [("grid", "fifo"), ("random", "fifo"), ("random", "asha"), ("hyperopt", "asha"),
                           ("bayesopt", "asha"), ("bayesopt", "fifo")]
    for frame in (run.trials, run.curves, run.summary, run.resources):
        assert {"task", "searcher", "scheduler", "seed"} <= set(frame.columns) and len(frame)
    assert run.info["status"] == "finished"


def test_python_m_analysis_rebuilds_summary_and_plots(smoke_run):
    import matplotlib.image as mpimg

    for name in PLOTS:
        (smoke_run / "plots" / name).unlink()
    (smoke_run / "summary.md").unlink()
    out = subprocess.run([sys.executable, "-m", "analysis", str(smoke_run)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in PLOTS:
        image = mpimg.imread(smoke_run / "plots" / name)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05, f"{name} is blank"
    text = (smoke_run / "summary.md").read_text()
    assert "val_regret_pts" in text and "grid_compute_share" in text and "| grid | fifo | 0 |" in text


def test_regret_and_grid_share_on_a_known_table():
    summary = pd.DataFrame({
        "searcher": ["grid", "bayesopt", "grid", "bayesopt"], "scheduler": ["fifo", "asha"] * 2, "seed": [0, 0, 1, 1],
        "best_val_accuracy": [0.97, 0.965, 0.96, 0.96], "trial_seconds": [200.0, 20.0, 100.0, 50.0],
        "epochs_trained": [1000, 120, 1000, 500], "gpu_seconds": [np.nan] * 4})
    out = with_grid_comparison(summary, Objective())
    assert out["val_regret_pts"].round(6).tolist() == [0.0, 0.5, 0.0, 0.0]
    assert out["grid_compute_share"].tolist() == [1.0, 0.1, 1.0, 0.5]
    # the deterministic share: epochs trained, the same on a busy machine as on a quiet one
    assert out["grid_epochs_share"].tolist() == [1.0, 0.12, 1.0, 0.5]


def test_a_resumed_runs_monitor_continues_the_timeline():
    """The monitor of a resumed run counts wall_seconds from the run's first start, after the
    earlier samples (it restarted at 0, so the resource plot ran backwards in time)."""
    first_start = time.time() - 100.0
    earlier = [{"time": first_start + 50.0, "wall_seconds": 50.0}]
    monitor = ResourceMonitor("t", gpu=None, origin=first_start, samples=earlier)
    with monitor:
        row = monitor.sample()
    assert monitor.rows()[0] == earlier[0]
    assert row["wall_seconds"] >= 100.0 > earlier[0]["wall_seconds"]


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_analysis_on_a_folder_that_is_not_a_run(tmp_path, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("hello")
    with pytest.raises(NotARunFolder):
        load_run(target)
    out = subprocess.run([sys.executable, "-m", "analysis", str(target)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "run folder" in out.stderr


def test_a_run_whose_trials_all_failed_still_gets_its_report(smoke_run, tmp_path):
    import shutil

    from analysis.report import build

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    summary = pd.read_csv(copy / "summary.csv")
    summary["trial_seconds"] = 0.0  # every trial failed at once: nothing cost anything
    summary["test_accuracy"] = np.nan
    summary.to_csv(copy / "summary.csv", index=False)
    build(copy)  # the cost/quality plot used a log axis and raised on zero costs
    assert (copy / "plots" / "cost_quality.png").is_file()


def test_the_monitor_counts_its_own_ray_workers_not_another_runs(ray_session, tmp_path):
    """Two runs on one machine each start their own Ray: a "ray::" process that is not a
    descendant of this driver (here an orphan named like a Ray worker) is another run's."""
    import os
    import signal

    @ray_session.remote
    def pid():
        return os.getpid()

    ours = ray_session.get(pid.remote())  # a worker of this process's Ray instance
    marker = tmp_path / "foreign.pid"
    # double fork: the "worker" is re-parented away from this process, as another run's would be
    subprocess.run(["sh", "-c", f"{sys.executable} -c \"import ctypes, os, time; "
                    "ctypes.CDLL(None).prctl(15, b'ray::Foreign', 0, 0, 0); "
                    f"open('{marker}', 'w').write(str(os.getpid())); time.sleep(60)\" &"], check=True)
    deadline = time.time() + 10
    while not (marker.exists() and marker.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    foreign = int(marker.read_text())
    try:
        import psutil

        assert psutil.Process(foreign).name() == "ray::Foreign"
        members = {p.pid for p in ResourceMonitor("t")._members()}
        assert ours in members and os.getpid() in members
        assert foreign not in members
    finally:
        os.kill(foreign, signal.SIGKILL)


def test_the_reference_grid_is_grid_fifo_and_is_named():
    summary = pd.DataFrame({
        "searcher": ["grid", "grid", "bayesopt"], "scheduler": ["asha", "fifo", "asha"], "seed": [0, 0, 0],
        "best_val_accuracy": [0.99, 0.97, 0.965], "trial_seconds": [50.0, 200.0, 20.0],
        "epochs_trained": [300, 1000, 120], "gpu_seconds": [np.nan] * 3})
    out = with_grid_comparison(summary, Objective())
    # against grid:fifo (the full grid), not the early-stopped grid:asha listed first
    assert out["val_regret_pts"].round(6).tolist() == [-2.0, 0.0, 0.5]
    assert set(out["grid_reference"]) == {"grid:fifo seed 0"} and out["grid_epochs_share"].tolist() == [0.3, 1.0, 0.12]
    only_asha = with_grid_comparison(summary[summary["scheduler"] == "asha"], Objective())
    assert set(only_asha["grid_reference"]) == {"grid:asha seed 0"}  # named, not passed off as the grid


def test_what_is_reproducible_is_said_with_the_concurrency():
    assert "every method's trials, epochs and picks" in reproducibility(1)
    many = reproducibility(4)
    assert "Not, at concurrency 4" in many and "grid_epochs_share" in many and "--max-concurrent 1" in many


def test_the_cost_axis_labels_do_not_overlap_when_costs_span_less_than_a_decade(tmp_path, monkeypatch):
    """Costs of 160..240 trial-seconds: matplotlib's log axis labels every minor tick in mathtext
    (1.6x10^2, 1.7x10^2, ...) and three pairs overlapped."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis import report
    from analysis.load import Run

    summary = pd.DataFrame({"searcher": ["grid", "random", "bayesopt"], "scheduler": ["fifo", "fifo", "asha"],
                            "seed": [0, 0, 0], "trial_seconds": [240.0, 200.0, 160.0], "gpu_seconds": [np.nan] * 3,
                            "test_accuracy": [0.95, 0.94, 0.96]})
    run = Run(path=tmp_path, info={}, trials=pd.DataFrame(), curves=pd.DataFrame(), summary=summary,
              resources=pd.DataFrame())
    drawn = {}

    def keep(fig, ax, path, legend="lower right"):
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0)) if legend == "outside" else ax.legend(loc=legend)
        fig.tight_layout()
        fig.canvas.draw()
        drawn["ax"] = ax

    monkeypatch.setattr(report, "_finish", keep)
    report.plot_cost_quality(run, tmp_path / "cost_quality.png")
    ax = drawn["ax"]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
             if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high]
    boxes = sorted((t.label1.get_window_extent() for t in ticks), key=lambda b: b.x0)
    assert len(boxes) >= 3  # still labelled
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [t.label1.get_text() for t in ticks]


def test_the_anytime_plot_shows_regret_to_the_runs_best_on_a_symlog_axis(smoke_run, monkeypatch):
    """In accuracy, Breast Cancer's first picks (~0.55) stretched the axis to 0.55-0.97 and five
    curves overlapped in its top sliver; as regret on a symmetric log scale they separate."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis import report

    run = load_run(smoke_run)
    drawn = {}
    monkeypatch.setattr(report, "_finish", lambda fig, ax, path, legend="lower right": drawn.update(ax=ax))
    report.plot_anytime(run, "wall_seconds", "seconds", smoke_run / "unused.png")
    ax = drawn["ax"]
    assert ax.get_yscale() == "symlog"
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    ys = ys[np.isfinite(ys)]
    assert ys.min() == pytest.approx(0.0, abs=1e-9)  # the method that reached the run's best ends at 0
    assert (ys >= -1e-9).all() and ys.max() > 0  # regret in points, never negative; the first picks are above 0
