"""Framework overhead per trial: our runner against a default-configured Ray Tune ``Tuner``.

Both run the same N instant trials (no training: one report and done) at concurrency 2 on
one Ray instance, in one process, one after the other; the measured seconds per trial and
their ratio are printed. Absolute times on a shared machine are noisy; the ratio is the result.

    python benchmarks/overhead.py --trials 40
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from core.task import TaskSpec  # noqa: E402
from experiments.collect import collect_trials  # noqa: E402
from experiments.plan import Method, RunPlan  # noqa: E402
from experiments.tuning import tune_method  # noqa: E402

CONCURRENCY = 2


class InstantTrainable(tune.Trainable):
    """One epoch that does nothing: what is left is the framework's own cost."""

    def setup(self, config):
        pass

    def reset_config(self, new_config):
        return True

    def step(self):
        return {"epoch": 1, "val_accuracy": float(self.config["x"]), "end_time": time.time(), "done": True}

    def save_checkpoint(self, checkpoint_dir):
        pass

    def load_checkpoint(self, checkpoint):
        pass


def instant_function(config):
    tune.report({"val_accuracy": float(config["x"])})


def ours(n: int, storage: Path) -> float:
    task = TaskSpec(name="instant", trainable=f"{__name__}:InstantTrainable",
                    space={"x": tuple(range(1000)), "num_epochs": (1,)})
    plan = RunPlan(task=task, num_samples=n, max_concurrent=CONCURRENCY, resources={"cpu": 1, "gpu": 0})
    method = Method("random", "fifo", 0)
    started = time.perf_counter()
    tuned = tune_method(plan, method, storage)
    trials = collect_trials(tuned.results, task, method, tuned.started).trials
    elapsed = time.perf_counter() - started
    assert len(trials) == n and all(t["status"] == "completed" for t in trials), "not every trial completed"
    return elapsed / n


def ray_default(n: int, storage: Path) -> float:
    started = time.perf_counter()
    tuner = tune.Tuner(
        instant_function,
        param_space={"x": tune.choice(list(range(1000)))},
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=CONCURRENCY, metric="val_accuracy",
                                    mode="max"),
        run_config=tune.RunConfig(storage_path=str(storage), name="ray-default"),
    )
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert len(results) == n and not results.errors, "not every trial completed"
    return elapsed / n


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="instant trials per side (default 40)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    ray.init(address="local", num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        ours_s = ours(args.trials, Path(tmp) / "ours")
        default_s = ray_default(args.trials, Path(tmp) / "default")
    ray.shutdown()
    print(f"{args.trials} instant trials at concurrency {CONCURRENCY}, {os.cpu_count()} CPUs")
    print(f"ours_s_per_trial={ours_s:.3f} ray_default_s_per_trial={default_s:.3f} speedup={default_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
