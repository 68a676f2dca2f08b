"""--gpus-per-trial auto: each memory class probed once, each trial asking Ray for its class's
share. The probe itself needs a card (benchmarks/gpu_check.py measures it); here its results are
injected and the rest runs as on a GPU machine: the test session's Ray declares one GPU."""

from __future__ import annotations

import json

import pytest

from experiments import packing
from tests.oom_task import TASK
from tests.tuning import collect
from tests.tuning import tune as tune_one
from trainables import get_task

INJECTED = {"[0.1]": 0.2, "[0.5]": 0.6, "[2.0]": 1.0}


def test_memory_classes_and_the_probe_configuration():
    imdb = get_task("imdb")
    classes = packing.memory_classes(imdb)
    assert classes == [{"batch_size": b, "max_seq_length": s} for b in (16, 32) for s in (128, 256)]
    config = packing.probe_config(imdb, {"model": "m", "subset": None}, classes[-1])
    assert config["batch_size"] == 32 and config["max_seq_length"] == 256 and config["num_train_epochs"] == 1
    assert config["padding"] == "max_length" and config["subset"] == 96  # the probe's options win: short, worst-case
    assert packing.class_key(imdb, {**config, "learning_rate": 1.0}) == "[32, 256]"
    assert packing.memory_classes(get_task("breast_cancer")) == [{}]  # none declared: one class


def test_a_share_is_the_need_plus_the_margin_rounded_up():
    assert packing.share_for(3000, 24576) == 0.15  # 3,000 MiB x 1.15 = 14.04% of a 24 GiB card
    assert packing.share_for(1000, 100_000) == 0.02  # 1.15% -> 2 hundredths
    assert packing.share_for(1, 100_000) == 0.01  # never zero: a GPU trial asks for some of it
    assert packing.share_for(30_000, 24576) == 1.0  # more than the card: the whole card (the OOM path decides)


def test_trials_at_once_counts_whole_trials_without_float_floor_division():
    assert 1 // 0.1 == 9.0  # why: exact floor division of the binary 0.1
    assert [packing.trials_at_once(s) for s in (0.1, 0.25, 0.03, 0.07, 0.3, 1.0)] == [10, 4, 33, 14, 3, 1]
    assert packing.trials_at_once(0.1, gpus=2) == 20


def test_each_trial_asks_ray_for_its_class_share(ray_session, tmp_path):
    tuned = tune_one(TASK, "grid", "fifo", 0, tmp_path, max_concurrent=3, resources={"cpu": 0.5, "gpu": 1.0},
                     gpu_shares=INJECTED, max_failures=1)
    trials, _, results = collect(tuned, TASK, "grid", "fifo", 0)
    by_need = {t["config/needs"]: t for t in trials}
    assert {need: t["gpu_share"] for need, t in by_need.items()} == {0.1: 0.2, 0.5: 0.6, 2.0: 1.0}
    for trial in trials:  # the share Ray granted, as the trial itself read it
        seen = {r["gpu_share"] for r in results[trial["trial_id"]].metrics_dataframe.to_dict("records")}
        assert seen == {trial["gpu_share"]}
    # fits: trained at their own share; 2.0 needs more than the card: oom alone, not retried
    assert by_need[0.1]["status"] == by_need[0.5]["status"] == "completed"
    assert by_need[2.0]["status"] == "oom" and by_need[2.0]["oom_attempts"] == 1


def test_auto_probes_before_the_run_folder_and_records_the_shares(ray_session, tmp_path, monkeypatch, capsys):
    import run_all
    from experiments import machine, runner
    from experiments.gpus import Gpu

    card = Gpu(index=0, nvml_index=0, uuid="GPU-00000000-bbbb", name="NVIDIA L4", memory_total_mb=23_034,
               visible_as="0", compute_capability=(8, 9))
    monkeypatch.setattr(runner, "visible_gpus", lambda: [card])
    monkeypatch.setattr(machine, "preflight", lambda resources: {})
    probed = {key: {"need_mb": share * 20_000, "card_mb": 23_034.0, "share": share} for key, share in INJECTED.items()}
    monkeypatch.setattr(packing, "probe", lambda task, options, cpus: probed)
    results = tmp_path / "results"
    code = run_all.main(["--task", "tests.oom_task", "--budget", "smoke", "--methods", "grid:fifo",
                         "--gpus-per-trial", "auto", "--max-failures", "1", "--results-dir", str(results),
                         "--monitor-interval", "0.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "GPU share by measured memory (needs): [0.1]: 0.2 (4000 MiB); [0.5]: 0.6" in out
    (run_dir,) = (results / "needs_memory").iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resolved"]["gpu_shares"] == INJECTED and info["gpu_probe"] == probed
    assert info["resolved"]["resources"]["gpu"] == 1.0  # the largest share: what scoring a pick holds
    import pandas as pd

    trials = pd.read_csv(run_dir / "trials.csv")
    assert dict(zip(trials["config/needs"], trials["gpu_share"])) == {0.1: 0.2, 0.5: 0.6, 2.0: 1.0}


def test_auto_is_a_value_of_the_flag(tmp_path):
    import run_all
    from experiments.spec import SpecError

    assert run_all.parse_spec(["--gpus-per-trial", "auto", "--results-dir", str(tmp_path)]).gpus_per_trial == "auto"
    with pytest.raises(SystemExit):
        run_all.parse_spec(["--gpus-per-trial", "most", "--results-dir", str(tmp_path)])
    with pytest.raises(SpecError, match="or auto"):
        run_all.parse_spec(["--gpus-per-trial", "1.5", "--results-dir", str(tmp_path)])


def test_concurrency_is_capped_by_the_methods_trials_and_a_searchers_need_for_feedback():
    """On an 80 GB card CIFAR-10's measured shares (about 0.04) hold 16 trials at once: a 14-trial TPE or a
    9-trial BayesOpt would then suggest every trial before any reports. searchers.method_concurrency is
    the one rule: the run's limit, at most the method's trials, at most a model's initial design."""
    from searchers import method_concurrency, n_initial_points

    shares = {"[32]": 0.04, "[64]": 0.05}
    limit = min(16, int(1 // min(shares.values())))  # the CPUs (16) and the smallest share (25) allow 16
    assert limit == 16
    assert method_concurrency("hyperopt", limit, 14, 48) == n_initial_points(14) == 4
    assert method_concurrency("bayesopt", limit, 9, 48) == n_initial_points(9) == 3
    assert method_concurrency("random", limit, 9, 48) == 9  # no model to feed: as many as it has trials
    assert method_concurrency("grid", limit, 9, 12) == 12 and method_concurrency("grid", limit, 9, 100) == 16
    assert method_concurrency("bayesopt", limit, 400, 6) == 6  # never more than the grid: it never repeats
    assert method_concurrency("hyperopt", 2, 41, 162) == 2  # a 2-CPU machine: the limit, as before


def test_a_real_method_asks_tune_for_the_capped_concurrency(ray_session, tmp_path, monkeypatch):
    import experiments.tuning as tuning
    from experiments.plan import Method, RunPlan
    from tests.analytic import TASK

    seen = {}
    real = tuning.tune.Tuner

    def spy(*args, tune_config=None, **kwargs):
        seen["max_concurrent_trials"] = tune_config.max_concurrent_trials
        return real(*args, tune_config=tune_config, **kwargs)

    monkeypatch.setattr(tuning.tune, "Tuner", spy)
    plan = RunPlan(task=TASK, num_samples=4, max_concurrent=16, resources={"cpu": 0.1, "gpu": 0})
    tuning.tune_method(plan, Method("bayesopt", "fifo", 0), tmp_path)
    assert seen["max_concurrent_trials"] == 3
