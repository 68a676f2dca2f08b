"""benchmarks/gpu_check.py's Ray-free path, end to end on the CPU, as on a bare GPU image: Ray,
hyperopt, bayes_opt and datasets unimportable (GPU_CHECK_WITHOUT), data in memory. It must not rot
between the GPU machines it is meant for."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys

from tests.conftest import ROOT


def run_check(*args: str) -> dict[str, str]:
    env = {**os.environ, "GPU_CHECK_WITHOUT": "ray,hyperopt,bayes_opt,datasets", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and " " not in line.split("=")[0])


def test_without_a_gpu_every_gpu_line_says_skipped():
    lines = run_check("--no-ray")
    assert lines["trainables_import"] == "ok (Ray absent)"
    for key in ("packing_4_vs_1", "distilbert_quarter_of_24gb", "checkpoint_round_trip", "precision", "memory_probe",
                "cifar10_ours_vs_plain"):
        assert lines[key] == "skipped: no GPU", key
    assert lines["ray_checks"] == "skipped: --no-ray"


@pytest.mark.slow
def test_the_ray_free_path_runs_end_to_end_on_the_cpu_without_ray():
    lines = run_check("--rehearse-on-cpu", "--trials", "1,2")
    assert lines["trainables_import"] == "ok (Ray absent)" and lines["ray_checks"].startswith("skipped: Ray is not")
    for key in ("packing_1_img_per_s", "packing_2_img_per_s", "packing_2_vs_1"):
        assert float(lines[key].split()[0]) > 0 and "CPU rehearsal" in lines[key], key
    assert lines["distilbert_1_trials"].startswith("trained") and lines["distilbert_2_trials"].startswith("trained")
    assert lines["checkpoint_round_trip"].startswith('{"device": "cpu", "epoch": true, "best_on_cpu": true}')
    assert lines["precision"] == "skipped: no GPU"
    assert float(lines["cifar10_ours_vs_plain"].split()[0]) > 0 and "CPU rehearsal" in lines["cifar10_ours_vs_plain"]
    assert lines["memory_probe"].startswith("skipped: no GPU (the probe measures CUDA memory")
