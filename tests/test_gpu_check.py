"""benchmarks/gpu_check.py's Ray-free path, end to end on the CPU, as on a bare GPU image: Ray,
hyperopt, bayes_opt and datasets unimportable (GPU_CHECK_WITHOUT), data in memory. It must not rot
between the GPU machines it is meant for, and one failing part or trial must not cost the others."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_trials import TrialFailed, gather  # noqa: E402


def run_check(*args: str, inject: str = "") -> tuple[int, dict[str, str]]:
    env = {**os.environ, "GPU_CHECK_WITHOUT": "ray,hyperopt,bayes_opt,datasets", "CUDA_VISIBLE_DEVICES": "",
           "GPU_CHECK_INJECT": inject}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and " " not in line.split("=")[0])
    return done.returncode, lines


def test_without_a_gpu_every_part_says_skipped():
    code, lines = run_check("--no-ray")
    assert code == 0 and lines["trainables_import"] == "ok (Ray absent)"
    for key in ("card", "imdb_packing", "cifar_packing", "memory_probe", "oom", "fp16", "imdb_ratio", "cifar_ratio",
                "checkpoint", "mps"):
        assert lines[key] == "skipped: no GPU", key
    assert lines["ray_checks"] == "skipped: --no-ray" and lines["failed_parts"] == "none"


def test_an_unknown_part_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--only", "card,nope"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "unknown part(s) nope" in done.stderr


def _exit_silently():
    os._exit(3)


def _hang():
    time.sleep(60)


def test_a_trial_that_dies_without_a_word_ends_its_check_in_seconds():
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    dying = context.Process(target=_exit_silently)
    dying.start()
    started = time.monotonic()
    with pytest.raises(TrialFailed, match=r"trial 1 of 1 exited \(code 3\) before it was ready"):
        gather(messages, [dying], time.monotonic() + 60, "ready")
    assert time.monotonic() - started < 30  # not the deadline's 60 s


def test_a_trial_that_hangs_ends_its_check_at_the_deadline():
    context = multiprocessing.get_context("fork")
    hanging = context.Process(target=_hang, daemon=True)
    hanging.start()
    try:
        with pytest.raises(TrialFailed, match=r"trial\(s\) \[1\] of 1 not done in time"):
            gather(context.Queue(), [hanging], time.monotonic() + 1, "done")
    finally:
        hanging.kill()


@pytest.mark.slow
def test_the_rehearsal_runs_every_cpu_part_and_survives_a_failing_trial_and_part():
    code, lines = run_check("--rehearse-on-cpu", "--trials", "1,2", inject="cifar_packing/trial,checkpoint")
    assert code == 1 and lines["failed_parts"] == "cifar_packing, checkpoint"
    assert lines["trainables_import"] == "ok (Ray absent)" and lines["ray_checks"].startswith("skipped: Ray is not")
    # the failing trial: the part's line says which trial and why; the count before it stands
    assert lines["cifar_packing"].startswith("error (exit 1): gpu_trials.TrialFailed: trial 2 of 2 failed before it "
                                             "was ready: RuntimeError: injected failure"), lines["cifar_packing"]
    assert float(lines["packing_b32_1_img_per_s"].split()[0]) > 0
    assert lines["checkpoint"].startswith("error (exit 1): RuntimeError: injected failure of the part checkpoint")
    # the parts after each failure ran
    for key in ("imdb_packing_1_samples_per_s", "imdb_packing_2_samples_per_s", "imdb_packing_2_vs_1",
                "imdb_ours_vs_plain", "cifar10_ours_vs_plain"):
        assert float(lines[key].split()[0]) > 0 and "CPU rehearsal" in lines[key], key
    for part in ("imdb_packing", "cifar_packing", "imdb_ratio", "cifar_ratio", "checkpoint"):
        used, allowed = lines[f"budget_{part}"].split(" of ")
        assert float(used) <= float(allowed.split()[0]), part
    for part in ("card", "memory_probe", "oom", "fp16", "mps"):
        assert lines[part] == "skipped: no GPU"


@pytest.mark.slow
def test_the_checkpoint_part_round_trips_on_the_cpu():
    code, lines = run_check("--rehearse-on-cpu", "--only", "checkpoint")
    assert code == 0
    assert lines["checkpoint_round_trip"].startswith('{"device": "cpu", "epoch": true, "best_on_cpu": true}')


def test_the_estimate_counts_each_default_methods_epochs_and_reads_the_checks_throughput(tmp_path):
    from gpu_estimate import default_methods, from_check

    from trainables import get_task

    imdb = default_methods(get_task("imdb"))  # 36 configurations of 3, 5 or 10 epochs; 9 sampled
    assert imdb["grid:fifo"] == 12 * (3 + 5 + 10) and imdb["random:fifo"] == 9 * 6
    # ASHA at rungs 1, 3, 9 of 10 (eta 3): 1 epoch each, 2 more for a third, 6 more for a ninth, ...
    assert abs(imdb["random:asha"] - 9 * ((1 + 2 / 3) + (1 + 2 / 3 + 2 / 9) + (1 + 2 / 3 + 6 / 9 + 1 / 27)) / 3) < 1e-9
    cifar = default_methods(get_task("cifar10"))
    assert cifar["grid:fifo"] == 18 * (10 + 20 + 30) and cifar["recommended (bayesopt:fifo)"] == 14 * 20
    check = tmp_path / "gpu.txt"
    check.write_text("imdb_packing_4_samples_per_s=812 (4 trials over one window)\npacking_b128_4_img_per_s=21000 (4)\n")
    assert from_check(str(check)) == {"imdb": 812.0, "cifar10": 21000.0}


def test_the_gpu_budgets_add_up_to_under_six_minutes():
    from gpu_check import PARTS

    assert sum(budget for _, budget, _ in PARTS.values()) < 360
