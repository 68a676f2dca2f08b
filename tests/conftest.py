"""Shared fixtures. Ray starts once per test session (starting it costs seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_SYNCER", "1")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # One GPU declared though this machine has none: Ray schedules and assigns it like a real
        # card, so the GPU branches of resources, concurrency and scoring run in CI (tests/test_gpu_ray.py);
        # only CUDA itself is missing, and trials that would use it must say so (CudaUnavailable).
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_run(ray_session, tmp_path_factory):
    """One `run_all.py --task breast_cancer --budget smoke` run folder, shared by the tests that read it."""
    import run_all

    results = tmp_path_factory.mktemp("results")
    argv = ["--task", "breast_cancer", "--budget", "smoke", "--results-dir", str(results), "--monitor-interval", "0.2"]
    assert run_all.main(argv) == 0
    (run_dir,) = (results / "breast_cancer").iterdir()
    return run_dir
