"""TPE's cost per trial as the history grows: Ray's HyperOptSearch with hyperopt's own TPE, against
ours (searchers/tpe_cache.py), side by side in one process, on the LCBench grid's search space.

Each loop asks for a configuration, reports one epoch and ends the trial, as ASHA ends most trials at
its first rung, with a few trials running at once (their records have no loss yet). Both searchers
get the same seed and the same scores, so their suggestions must be the same: the script checks it.

    python benchmarks/tpe_cost.py                # 4,000 trials, ~3 minutes
    python benchmarks/tpe_cost.py --trials 1000  # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def searchers(seed: int):
    from ray import tune
    from ray.tune.search.hyperopt import HyperOptSearch

    from experiments.replay.lcbench import GRID
    from searchers import MethodArgs, make_hyperopt, n_initial_points

    space = {name: tune.choice(list(values)) for name, values in GRID.items()}
    theirs = HyperOptSearch(space, metric="score", mode="max", random_state_seed=seed,
                            n_initial_points=n_initial_points(100_000))
    plan = make_hyperopt(MethodArgs(task=type("Task", (), {"space": GRID})(), seed=seed, num_samples=100_000))
    ours = plan.search_alg
    ours.set_search_properties("score", "max", plan.param_space)
    return theirs, ours


def run(searcher, trials: int, marks: list[int], running: int = 4, seed: int = 0):
    """Seconds per trial (suggestion, report, end) between marks, and the configurations suggested."""
    rng = np.random.default_rng(seed)
    live, configs, times = [], [], {}
    spent, last = 0.0, 0
    for i in range(trials):
        started = time.perf_counter()  # all the searcher's work for a trial: its suggestion, report and end
        configs.append(searcher.suggest(str(i)))
        live.append(str(i))
        searcher.on_trial_result(str(i), {"score": 0.0, "training_iteration": 1})
        if len(live) > running:
            searcher.on_trial_complete(live.pop(0), {"score": float(rng.random())})
        spent += time.perf_counter() - started
        if i + 1 in marks:
            times[i + 1] = spent / (i + 1 - last)
            spent, last = 0.0, i + 1
    return times, configs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    marks = sorted({m for m in (100, 500, 1000, 2000, 3000, 4000, 6000, 8000) if m < args.trials} | {args.trials})
    theirs, ours = searchers(args.seed)
    t_ours, c_ours = run(ours, args.trials, marks, seed=args.seed)
    t_theirs, c_theirs = run(theirs, args.trials, marks, seed=args.seed)
    same = c_ours == c_theirs
    print(f"TPE, LCBench grid space, {args.trials} trials, 4 running at once; the searcher's ms per trial (suggest, one report, end), mean over the trials since the last mark")
    print(f"{'trials':>7} {'hyperopt (Ray)':>15} {'ours':>8} {'ratio':>7}")
    for m in marks:
        print(f"{m:>7} {t_theirs[m] * 1e3:>15.2f} {t_ours[m] * 1e3:>8.2f} {t_theirs[m] / t_ours[m]:>7.1f}")
    print(f"same {args.trials} suggestions: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
