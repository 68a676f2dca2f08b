"""GPU discovery and pinning (experiments/gpus.py, machine.choose_gpu), on a stand-in for NVML:
--gpu-id counts within CUDA_VISIBLE_DEVICES, a missing driver is "no GPU", a broken one an error."""

from __future__ import annotations

import pytest

from experiments import machine
from experiments.gpus import GpuProbeError, all_gpus, visible_gpus
from experiments.spec import ExperimentSpec, SpecError
from tests.fake_nvml import (
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
    NVMLError_LibRmVersionMismatch,
)

FOUR = [("NVIDIA A100", 40_000), ("NVIDIA A100", 40_000), ("NVIDIA H200", 141_000), ("NVIDIA L4", 23_000)]


def test_without_a_restriction_every_card_is_visible_in_nvml_order():
    gpus = visible_gpus(FakeNvml(FOUR), env={})
    assert [(g.index, g.nvml_index, g.name, g.visible_as) for g in gpus] == [
        (0, 0, "NVIDIA A100", "0"), (1, 1, "NVIDIA A100", "1"), (2, 2, "NVIDIA H200", "2"), (3, 3, "NVIDIA L4", "3")]


def test_cuda_visible_devices_is_respected_and_renumbered():
    # a SLURM job given cards 2 and 3: --gpu-id 0 is card 2, as CUDA numbers it inside the job
    gpus = visible_gpus(FakeNvml(FOUR), env={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert [(g.index, g.nvml_index, g.visible_as) for g in gpus] == [(0, 2, "2"), (1, 3, "3")]
    nvml = FakeNvml(FOUR)
    uuid = nvml.cards[3].uuid
    (by_uuid,) = visible_gpus(nvml, env={"CUDA_VISIBLE_DEVICES": uuid[:12]})  # a UUID prefix, as CUDA takes it
    assert (by_uuid.index, by_uuid.nvml_index, by_uuid.visible_as) == (0, 3, uuid[:12])
    # like CUDA, the list ends at the first entry that names no card; "" and -1 hide them all
    assert [g.nvml_index for g in visible_gpus(FakeNvml(FOUR), env={"CUDA_VISIBLE_DEVICES": "1,7,2"})] == [1]
    assert visible_gpus(FakeNvml(FOUR), env={"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus(FakeNvml(FOUR), env={"CUDA_VISIBLE_DEVICES": "-1"}) == []


@pytest.mark.parametrize("missing", [NVMLError_LibraryNotFound("NVML Shared Library Not Found"),
                                     NVMLError_DriverNotLoaded("Driver Not Loaded")])
def test_no_driver_means_no_gpu(missing):
    assert all_gpus(FakeNvml(fail_init=missing)) == []


def test_a_broken_driver_is_an_error_not_no_gpu():
    with pytest.raises(GpuProbeError, match="Driver/library version mismatch.*nvidia-smi"):
        all_gpus(FakeNvml(fail_init=NVMLError_LibRmVersionMismatch("Driver/library version mismatch")))


def test_nvml_is_shut_after_reading():
    nvml = FakeNvml(FOUR)
    all_gpus(nvml)
    assert nvml.open == 0


def test_the_run_is_pinned_within_the_visible_set(tmp_path):
    gpus = visible_gpus(FakeNvml(FOUR), env={"CUDA_VISIBLE_DEVICES": "2,3"})
    spec = ExperimentSpec(gpu_id=1, results_dir=tmp_path)
    chosen = machine.choose_gpu(spec, gpus)
    assert chosen.nvml_index == 3
    assert machine.pinned_environment(chosen, {}) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "3",
                                                      "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    # a user's own CUDA_DEVICE_ORDER and allocator settings are kept
    assert machine.pinned_environment(chosen, {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    assert machine.pinned_environment(chosen, {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"})[
        "PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"
    assert machine.choose_gpu(ExperimentSpec(results_dir=tmp_path), gpus).nvml_index == 2  # default: the first visible
    with pytest.raises(SpecError, match=r"--gpu-id 2 does not exist; GPUs here: 0 \(NVIDIA H200\), 1 \(NVIDIA L4\)"):
        machine.choose_gpu(ExperimentSpec(gpu_id=2, results_dir=tmp_path), gpus)


def test_gpu_id_with_a_cluster_is_refused_in_one_line(tmp_path):
    with pytest.raises(SpecError, match="--gpu-id pins a local run.*--ray-address"):
        ExperimentSpec(gpu_id=0, ray_address="auto", results_dir=tmp_path)


def test_a_mig_slice_in_cuda_visible_devices_is_a_gpu_not_no_gpu():
    """An HPC node hands a job a MIG slice by its UUID: that is the job's GPU (sized as the slice)."""
    nvml = FakeNvml(FOUR, mig={2: (18_000, 18_000)})
    assert [g.name for g in visible_gpus(nvml, env={})] == [name for name, _ in FOUR]  # whole cards unless told
    slice_uuid = nvml.cards[2].slices[1].uuid
    (gpu,) = visible_gpus(nvml, env={"CUDA_VISIBLE_DEVICES": slice_uuid})
    assert (gpu.index, gpu.nvml_index, gpu.uuid, gpu.memory_total_mb) == (0, 2, slice_uuid, 18_000)
    assert "MIG" in gpu.name and nvml.open == 0


def test_each_nvml_field_is_read_on_its_own():
    """A MIG slice answers memory but not utilization ("Not Supported"): the sample keeps what it has."""
    from experiments.gpus import GpuSampler

    nvml = FakeNvml(FOUR, mig={0: (9_000,)})
    (gpu,) = visible_gpus(nvml, env={"CUDA_VISIBLE_DEVICES": nvml.cards[0].slices[0].uuid})
    sampler = GpuSampler(gpu, nvml)
    util, memory = sampler.sample()
    assert util is None and memory is not None and memory > 0
    sampler.close()
    both = GpuSampler(visible_gpus(nvml, env={})[1], FakeNvml(FOUR, unsupported=("utilization", "memory")))
    assert both.sample() == (None, None)  # nothing supported: no error, the monitor's CPU sample goes on


def test_the_monitor_keeps_its_cpu_sample_when_a_gpu_field_is_unsupported():
    from experiments.monitor import ResourceMonitor

    nvml = FakeNvml(FOUR, unsupported=("utilization",))
    monitor = ResourceMonitor("t", 0.1, gpu=visible_gpus(nvml, env={})[0], nvml=nvml)
    row = monitor.sample()
    assert row["gpu_util"] is None and row["gpu_mem_mb"] is not None and row["rss_mb"] > 0


@pytest.mark.parametrize("card, precision", [("NVIDIA H200", "bf16"), ("NVIDIA A100", "bf16"), ("NVIDIA L4", "bf16"),
                                             ("Tesla T4", "fp16"), ("Tesla V100-SXM2-32GB", "fp16")])
def test_the_precision_follows_the_card_and_run_json_records_it(card, precision, ray_session):
    """bf16 only where the card computes it natively (compute capability 8.0+), else fp16 with a
    gradient scaler; the CPU trains in fp32. run.json's device records it per card, from NVML."""
    from core.rules import training_precision

    (gpu,) = visible_gpus(FakeNvml([(card, 16_000)]), env={})
    assert training_precision(gpu.compute_capability) == precision and training_precision(None) == "fp32"
    described = machine.describe_device([gpu])["gpus"][0]
    assert described["precision"] == precision and described["compute_capability"] == list(gpu.compute_capability)


def test_on_the_cpu_a_training_run_uses_no_autocast_and_no_scaler():
    import torch

    from trainables.base import MixedPrecision

    precision = MixedPrecision(torch.device("cpu"))
    assert precision.name == "fp32" and not precision.scaler.is_enabled() and not precision.autocast._enabled


def test_an_exclusive_process_card_with_a_fractional_share_is_refused_in_one_line(tmp_path, monkeypatch):
    """HPC nodes often set EXCLUSIVE_PROCESS: one CUDA context at a time, so packed trials would fail
    one by one. Refused before anything runs, unless MPS is running or a trial takes the whole card."""
    from experiments import gpus as gpus_module

    nvml = FakeNvml(FOUR)
    nvml.cards[0].exclusive = True
    visible = visible_gpus(nvml, env={})
    assert visible[0].exclusive_process and not visible[1].exclusive_process
    monkeypatch.setattr(machine, "mps_running", lambda: False)
    with pytest.raises(SpecError, match="exclusive-process compute mode: --gpus-per-trial 0.25 packs"):
        machine.choose_gpu(ExperimentSpec(results_dir=tmp_path), visible, task_share=0.25)
    assert machine.choose_gpu(ExperimentSpec(results_dir=tmp_path, gpus_per_trial=1.0), visible) == visible[0]
    assert machine.choose_gpu(ExperimentSpec(results_dir=tmp_path, gpu_id=1), visible, task_share=0.25) == visible[1]
    monkeypatch.setattr(machine, "mps_running", lambda: True)
    assert machine.choose_gpu(ExperimentSpec(results_dir=tmp_path), visible, task_share=0.25) == visible[0]
    assert callable(gpus_module.mps_running) and gpus_module.mps_running() in (True, False)
