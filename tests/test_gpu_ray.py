"""The GPU branches a CPU can reach: the test session's Ray declares one GPU (conftest), so
Ray places fractional-GPU trials and the scoring task and assigns them the card exactly as on
a GPU machine; only CUDA is missing. benchmarks/gpu_check.py covers the rest on a real card."""

from __future__ import annotations

import pytest
import ray
import torch

from core.task import TaskSpec
from experiments import machine
from experiments.plan import Method, RunPlan
from experiments.scoring import scoring_options, summarize_method
from tests.gpu_probe import scoring_probe
from tests.tuning import collect
from tests.tuning import tune as tune_one
from trainables import get_task
from trainables.base import CudaUnavailable, choose_device

PROBE = TaskSpec(name="probe", trainable="tests.gpu_probe:DeviceProbe", space={"x": (1, 2, 3, 4), "num_epochs": (1,)})


def test_a_quarter_gpu_trial_asks_for_it_and_four_fit_the_card(ray_session):
    assert ray.cluster_resources().get("GPU") == 1
    resources = machine.trial_resources(get_task("cifar10"), cpus_per_trial=0.5, gpus_per_trial=0.25)
    assert resources == {"cpu": 0.5, "gpu": 0.25}
    assert machine.default_max_concurrent(resources) == 4  # 2 CPUs / 0.5 and 1 GPU / 0.25
    assert machine.default_max_concurrent({"cpu": 1.0, "gpu": 0.25}) == 2  # the CPUs bind first
    assert machine.default_max_concurrent({"cpu": 0.5, "gpu": 0.5}) == 2  # the GPU binds first
    # the task's own fraction where none is given; none at all for a task that asks for none
    assert machine.trial_resources(get_task("imdb"), None, None) == {"cpu": 1.0, "gpu": 0.25}
    assert machine.trial_resources(get_task("breast_cancer"), None, None) == {"cpu": 1.0, "gpu": 0.0}


def test_gpu_trials_get_the_card_and_fail_loudly_without_cuda(ray_session, tmp_path):
    tuned = tune_one(PROBE, "grid", "fifo", 0, tmp_path, max_concurrent=4, resources={"cpu": 0.5, "gpu": 0.25})
    reports = [r.metrics for r in tuned.results]
    assert len(reports) == 4
    for report in reports:
        assert report["gpu_ids"] == "0" and report["cuda_visible_devices"] == "0"  # Ray's assignment
        if not torch.cuda.is_available():  # this machine: say so, never train on the CPU unnoticed
            assert report["device"] == "" and "cannot use CUDA" in report["error"] and "--gpus-per-trial 0" in report["error"]


def test_zero_gpu_trials_never_select_cuda(ray_session, tmp_path):
    tuned = tune_one(PROBE, "grid", "fifo", 0, tmp_path, max_concurrent=2, resources={"cpu": 1, "gpu": 0})
    for result in tuned.results:
        assert result.metrics["gpu_ids"] == "" and result.metrics["device"] == "cpu"
    # ray issue 54868: such a worker may still see the driver's CUDA_VISIBLE_DEVICES; only Ray's
    # assignment decides, so a CUDA that works does not pull it onto the card either
    assert choose_device(gpu_ids=[], cuda_available=True).type == "cpu"
    assert choose_device(gpu_ids=["0"], cuda_available=True) == torch.device("cuda", 0)
    with pytest.raises(CudaUnavailable):
        choose_device(gpu_ids=["0"], cuda_available=False)


def test_the_scoring_task_holds_the_trials_resources_and_leaves_with_its_worker(ray_session):
    plan = RunPlan(task=get_task("cifar10"), num_samples=1, max_concurrent=1, resources={"cpu": 1.0, "gpu": 0.25})
    options = scoring_options(plan)
    assert options == {"num_cpus": 1.0, "num_gpus": 0.25, "max_calls": 1, "max_retries": 1}
    task = ray.remote(**options)(scoring_probe)
    first, second = ray.get(task.remote()), ray.get(task.remote())
    assert first[0] == second[0] == "0"  # placed on the card like a trial
    assert first[1] != second[1]  # max_calls=1: the worker, its CUDA context and data, exit after each


def test_gpu_seconds_follow_the_fraction_in_a_run(ray_session, tmp_path):
    from tests.analytic import TASK

    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path, max_concurrent=2, resources={"cpu": 1, "gpu": 0.25})
    trials, _, _ = collect(tuned, TASK, "grid", "fifo", 0)
    summary = summarize_method(TASK, Method("grid", "fifo", 0), trials, tuned.wall_seconds, {}, None, 0.25)
    assert summary["gpu_seconds"] == pytest.approx(0.25 * summary["trial_seconds"]) and summary["gpu_seconds"] > 0


def test_a_gpu_torch_cannot_use_stops_the_run_before_it_starts(ray_session, tmp_path, monkeypatch, capsys):
    """The preflight: one Ray task with a trial's GPU share does what every trial would first do.
    Here Ray declares a GPU that torch cannot use, so the run stops in one line, exit 2, nothing
    written, instead of every trial failing in turn."""
    import run_all
    from experiments import runner
    from experiments.gpus import Gpu

    card = Gpu(index=0, nvml_index=0, uuid="GPU-00000000-aaaa", name="NVIDIA H200", memory_total_mb=141_000,
               visible_as="0", compute_capability=(9, 0))
    monkeypatch.setattr(runner, "visible_gpus", lambda: [card])
    results = tmp_path / "results"
    code = run_all.main(["--task", "breast_cancer", "--budget", "smoke", "--gpus-per-trial", "0.25",
                         "--results-dir", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "the GPU preflight failed" in err[0] and "cannot use CUDA" in err[0] and "--gpus-per-trial 0" in err[0]
    assert not results.exists()


def test_a_task_that_declares_no_gpu_share_gets_a_quarter_where_ray_has_a_gpu(ray_session):
    """A user's task on a one-GPU machine trains on it by default (four trials share the card), and the
    run's first lines say so; a task declaring 0 (Breast Cancer) stays on the CPU."""
    from experiments.spec import ExperimentSpec
    from experiments.startup import gpu_share_line

    users = TaskSpec(name="mine", trainable="tests.gpu_probe:DeviceProbe", space={"x": (1, 2), "num_epochs": (1,)})
    assert users.gpus_per_trial == 0.25
    assert machine.trial_resources(users, None, None) == {"cpu": 1.0, "gpu": 0.25}
    assert machine.trial_resources(users, None, 0.0) == {"cpu": 1.0, "gpu": 0.0}  # --gpus-per-trial 0
    from trainables import get_task

    assert machine.trial_resources(get_task("breast_cancer"), None, None)["gpu"] == 0.0
    line = gpu_share_line(ExperimentSpec(), users, {"cpu": 1.0, "gpu": 0.25}, None)
    assert line == ("trials train on the cluster's GPUs, 0.25 of it each (task mine's default; --gpus-per-trial 0 "
                    "keeps them on the CPU)")

