"""Search methods and schedulers, each built by a factory from one ``MethodArgs``.

A new searcher is one function and one entry in ``SEARCHERS``; a new scheduler likewise in
``SCHEDULERS``. Nothing here imports Ray until a factory is called, so validating names is
free (``run_all.py --help`` stays fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class MethodArgs:
    """What every searcher and scheduler factory is given."""

    task: Any  # core.task.TaskSpec at the chosen budget
    seed: int
    num_samples: int  # trials for the sampling searchers (the grid runs every configuration)
    max_concurrent: int = 0  # trials at once; 0: no limit (searchers Tune does not wrap need it)


@dataclass
class SearchPlan:
    """What a searcher factory hands the Tuner."""

    search_alg: Any  # a ray.tune.search.Searcher / SearchAlgorithm, or None for Ray's default
    param_space: dict
    num_samples: int


def n_initial_points(num_samples: int) -> int:
    """Random trials before a model-based searcher takes over: a quarter of the budget, 3 to 10."""
    return int(min(10, max(3, math.ceil(num_samples / 4))))


def _choice_space(task) -> dict:
    from ray import tune

    # One value is a constant, not a choice: keeps TPE and the GP from searching it.
    return {name: tune.choice(list(values)) if len(values) > 1 else values[0]
            for name, values in task.space.items()}


def make_grid(args: MethodArgs) -> SearchPlan:
    from ray import tune

    space = {name: tune.grid_search(list(values)) for name, values in args.task.space.items()}
    return SearchPlan(search_alg=None, param_space=space, num_samples=1)


def make_random(args: MethodArgs) -> SearchPlan:
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune's max_concurrent_trials does not reach a BasicVariantGenerator passed in: give it here.
    generator = BasicVariantGenerator(random_state=args.seed, max_concurrent=args.max_concurrent)
    return SearchPlan(generator, _choice_space(args.task), args.num_samples)


def make_hyperopt(args: MethodArgs) -> SearchPlan:
    try:
        from ray.tune.search.hyperopt import HyperOptSearch
        import hyperopt  # noqa: F401
    except ImportError as exc:
        raise ImportError("HyperOpt must be installed: pip install hyperopt") from exc
    from searchers.tpe_cache import cached_posterior, lookup_searcher_class

    assert issubclass(lookup_searcher_class(), HyperOptSearch)
    searcher = lookup_searcher_class()(n_initial_points=n_initial_points(args.num_samples), random_state_seed=args.seed)
    searcher.algo = cached_posterior(searcher.algo)  # the same suggestions, cheaper (searchers/tpe_cache.py)
    return SearchPlan(searcher, _choice_space(args.task), args.num_samples)


def make_bayesopt(args: MethodArgs) -> SearchPlan:
    from searchers.bayesopt import BayesOptSearcher

    searcher = BayesOptSearcher(random_state=args.seed, n_initial_points=n_initial_points(args.num_samples))
    return SearchPlan(searcher, _choice_space(args.task), args.num_samples)


def make_rungbo(args: MethodArgs) -> SearchPlan:
    from searchers.rungbo import RungBOSearcher

    searcher = RungBOSearcher(random_state=args.seed, n_initial_points=n_initial_points(args.num_samples),
                              resource_attr=args.task.resource_attr)
    return SearchPlan(searcher, _choice_space(args.task), args.num_samples)


def make_fifo(args: MethodArgs):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def make_asha(args: MethodArgs):
    from ray.tune.schedulers import ASHAScheduler

    task = args.task
    return ASHAScheduler(
        time_attr=task.resource_attr,  # epochs trained
        max_t=task.max_t,  # the largest epoch count in the space
        grace_period=min(task.grace_period, task.max_t),  # epochs: the first rung
        reduction_factor=task.reduction_factor,
    )


def make_promotion(args: MethodArgs):
    from searchers.promotion import PromotionASHA

    task = args.task
    return PromotionASHA(time_attr=task.resource_attr, max_t=task.max_t, grace_period=min(task.grace_period, task.max_t),
                         reduction_factor=task.reduction_factor)


SEARCHERS: dict[str, Callable[[MethodArgs], SearchPlan]] = {
    "grid": make_grid,
    "random": make_random,
    "hyperopt": make_hyperopt,
    "bayesopt": make_bayesopt,
    "rungbo": make_rungbo,  # BayesOpt fitted at the highest well-populated ASHA rung (searchers/rungbo.py)
}
SCHEDULERS: dict[str, Callable[[MethodArgs], Any]] = {
    "fifo": make_fifo,
    "asha": make_asha,
    # promotion-type ASHA: trials pause at each rung, resumed inside its top 1/eta (searchers/promotion.py);
    # the replay only, for now (REPLAY_ONLY)
    "promotion": make_promotion,
}
# Schedulers the replay runs but real runs refuse, and why (one line for the user).
REPLAY_ONLY = {"promotion": "a paused trial cannot be resumed by the trainables yet (their checkpoints hold the "
                            "best weights, not the training state); it runs in the replay benchmark"}
# The scheduler a searcher named alone in --methods runs with: the baselines run to completion
# (as a practitioner would), the model-based searchers under ASHA (docs/DESIGN.md).
DEFAULT_SCHEDULER = {"grid": "fifo", "random": "fifo", "hyperopt": "asha", "bayesopt": "asha", "rungbo": "asha"}
# What `run_all.py` compares when --methods is not given: the baselines, the proposed methods,
# and random search under ASHA, the control that tells a gain of the searcher from one of the
# scheduler (docs/DESIGN.md, "The methods compared").
DEFAULT_METHODS = (("grid", "fifo"), ("random", "fifo"), ("random", "asha"), ("hyperopt", "asha"),
                   ("bayesopt", "asha"))
