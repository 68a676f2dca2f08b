"""Soak: many instant trials through the real runner, watching for leaks.

    python benchmarks/soak.py [--trials 1000]

Runs the tests' analytic task (no training: each epoch is a formula) with random search under
FIFO for ``--trials`` trials through ``run_all.main``, in this process, and prints key=value
lines: the driver's resident memory and open file descriptors before and after, the Ray
workers' resident memory at the start and the end of the run (from the run's own
resources.csv: driver plus its Ray workers), trials per second in each tenth of the run (a
slowdown shows as a falling rate), and the run folder's size. Leaks show as growth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args(argv)

    import pandas as pd
    import psutil

    import run_all
    import trainables

    from experiments import runner

    trainables.TASK_MODULES["analytic"] = "tests.analytic"  # the instant task of the tests
    runner.evaluate_selected = lambda plan, result: {}  # it has no test split to score; the loop is measured
    me = psutil.Process(os.getpid())
    rss_before, fds_before = me.memory_info().rss / 2**20, me.num_fds()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        code = run_all.main(["--task", "analytic", "--methods", "random:fifo", "--num-samples", str(args.trials),
                             "--max-concurrent", "2", "--results-dir", tmp, "--quiet", "--monitor-interval", "1"])
        wall = time.time() - started
        (run_dir,) = (Path(tmp) / "analytic").iterdir()
        trials = pd.read_csv(run_dir / "trials.csv")
        curves = pd.read_csv(run_dir / "curves.csv")
        resources = pd.read_csv(run_dir / "resources.csv").dropna(subset=["rss_mb"])
        ends = curves.groupby("trial_id")["wall_seconds"].max().sort_values().to_numpy()
        tenth = max(1, len(ends) // 10)
        rates = [tenth / max(ends[min(i + tenth, len(ends)) - 1] - (ends[i - 1] if i else 0.0), 1e-9)
                 for i in range(0, len(ends) - tenth + 1, tenth)]
        print(f"exit={code} trials={len(trials)} completed={(trials['status'] == 'completed').sum()} "
              f"wall_s={wall:.0f}")
        print(f"driver_rss_mb_before={rss_before:.0f} driver_rss_mb_after={me.memory_info().rss / 2**20:.0f}")
        print(f"driver_fds_before={fds_before} driver_fds_after={me.num_fds()}")
        head, tail = resources.head(5), resources.tail(5)
        print(f"run_rss_mb_first5={head['rss_mb'].mean():.0f} run_rss_mb_last5={tail['rss_mb'].mean():.0f} "
              f"processes_first5={head['n_processes'].mean():.1f} processes_last5={tail['n_processes'].mean():.1f}")
        print("trials_per_s_by_tenth=" + ",".join(f"{r:.1f}" for r in rates))
        print(f"run_folder_mb={_folder_mb(run_dir):.1f}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
