"""What freeze-thaw's model costs (searchers/freeze_thaw.py, searchers/power_law.py).

    python benchmarks/freeze_thaw_cost.py                 # the refit at 500 observed epochs
    python benchmarks/freeze_thaw_cost.py --tables 4      # and replays side by side with bayesopt:fifo

1. A decision with a refit in a real run, at 500 observed epochs on LCBench's 7 searched hyperparameters
   and 1,944 grid configurations: the warm-started refit (what the scheduler does once the observations
   have grown by 5%), then every configuration's power law and log EI (what a decision reads). Median of
   5; target: under 0.2 s on this machine.
2. With ``--tables N``: one seed of ``dpl:freeze_thaw`` and of ``bayesopt:fifo`` on the first N even-half
   LCBench tables to 25% of the grid's compute, one after the other in this process: the ratio of their
   replay seconds per table (target: at most ~3x). Skipped, saying so, without the tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import _common  # noqa: F401  (puts the repository on sys.path)


def refit_cost(observed: int = 500, repeats: int = 5) -> dict:
    from searchers.power_law import PowerLawEnsemble, log_expected_improvement

    rng = np.random.default_rng(0)
    grid = rng.random((1944, 7))
    configs = rng.integers(0, 1944, size=observed)
    budget = rng.integers(1, 51, size=observed) / 50
    loss = 0.2 + 0.3 * grid[configs, 0] + 0.1 * budget ** -0.5 + rng.normal(0, 0.01, observed)
    model = PowerLawEnsemble(7, seed=0)
    model.fit(grid[configs[:10]], budget[:10], loss[:10])  # the first fit, at the initial design
    fits, decisions = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        steps = model.fit(grid[configs], budget, loss)
        fitted = time.perf_counter()
        laws = model.curve_params(grid)
        log_expected_improvement(model.loss_at(laws, np.ones(len(grid))), float(loss.min()))
        fits.append(fitted - started)
        decisions.append(time.perf_counter() - started)
    return {"observed": observed, "steps": steps, "fit_s": statistics.median(fits),
            "decision_s": statistics.median(decisions)}


def replay_ratio(n_tables: int) -> list[tuple[str, float, float]]:
    from experiments.replay.simulator import replay_method
    from experiments.replay.suite import default_tables_dir, tables_of
    from experiments.replay.table import load_table

    folder = default_tables_dir()
    out = []
    for task in tables_of(folder, "even")[:n_tables]:
        table = load_table(folder / task)
        seconds = []
        for searcher, scheduler in (("dpl", "freeze_thaw"), ("bayesopt", "fifo")):
            started = time.perf_counter()
            replay_method(table, searcher, scheduler, seed=0, num_samples=100_000, budget=0.25)
            seconds.append(time.perf_counter() - started)
        out.append((task, *seconds))
        print(f"{task}: dpl:freeze_thaw {seconds[0]:.1f} s, bayesopt:fifo {seconds[1]:.1f} s, "
              f"ratio {seconds[0] / seconds[1]:.2f}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=0, help="also replay on this many even-half LCBench tables")
    args = parser.parse_args(argv)
    from experiments.replay.simulator import _one_blas_thread

    _one_blas_thread()  # as the suite's worker processes compute
    cost = refit_cost()
    print(f"refit at {cost['observed']} observed epochs ({cost['steps']} minibatches): {cost['fit_s']:.3f} s; "
          f"with every configuration's law and log EI: {cost['decision_s']:.3f} s (median of 5)")
    if args.tables:
        from experiments.replay.suite import default_tables_dir

        if not default_tables_dir().is_dir():
            print("no LCBench tables here (python -m experiments.replay build-lcbench): replays skipped")
            return 0
        rows = replay_ratio(args.tables)
        ratios = [dpl / bo for _, dpl, bo in rows]
        print(f"replay seconds dpl:freeze_thaw / bayesopt:fifo over {len(rows)} tables: median {statistics.median(ratios):.2f}"
              f" [{min(ratios):.2f}, {max(ratios):.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
