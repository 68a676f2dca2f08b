"""Search methods and schedulers, each built by a factory from one ``MethodArgs``.

A new searcher is one function and one entry in ``SEARCHERS``; a new scheduler likewise in
``SCHEDULERS``. Nothing here imports Ray until a factory is called, so validating names is
free (``run_all.py --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
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
    # A pausing scheduler's (build_method fills it in): the ids of the trials paused now, which hold no
    # place in the concurrency limit (searchers/pausing.py)
    paused: Callable[[], set] | None = None
    pause_disk_gb: float | None = None  # a pausing scheduler's budget for paused trials' states (None: none)
    state_bytes: Callable[[Any], float | None] | None = None  # a paused trial's state size; None: its checkpoint's


@dataclass
class SearchPlan:
    """What a searcher factory hands the Tuner."""

    search_alg: Any  # a ray.tune.search.Searcher / SearchAlgorithm, or None for Ray's default
    param_space: dict
    num_samples: int


def n_initial_points(num_samples: int) -> int:
    """Random trials before a model-based searcher takes over: a quarter of the budget, 3 to 10."""
    return int(min(10, max(3, math.ceil(num_samples / 4))))


MODEL_BASED = ("hyperopt", "bayesopt", "rungbo", "dpl")  # searchers whose suggestions learn from the results so far


def method_concurrency(searcher: str, limit: int, num_samples: int, grid_size: int) -> int:
    """Trials at once for one method: the run's ``limit`` (what the CPUs and GPU shares hold), but never
    more than the method has trials (grid: the grid; BayesOpt and rungbo: at most the grid, they never
    repeat), and for a model-based searcher never more than its random initial design: at a higher
    concurrency every suggestion is made before any trial reports and the model learns nothing (an
    80 GB card holds 16 CIFAR-10 trials at once; a 14-trial TPE run would then be random search)."""
    trials = grid_size if searcher == "grid" else num_samples
    if searcher in NEVER_REPEAT:
        trials = min(trials, grid_size)
    cap = min(limit, max(1, trials))
    return min(cap, n_initial_points(num_samples)) if searcher in MODEL_BASED else cap


def _choice_space(task) -> dict:
    from ray import tune

    # One value is a constant, not a choice: keeps TPE and the GP from searching it.
    return {name: tune.choice(list(values)) if len(values) > 1 else values[0]
            for name, values in task.space.items()}


def _generator(args: MethodArgs, **kwargs):
    """Ray's generator of grid and random configurations, counting paused trials out under a pausing scheduler.
    Tune's max_concurrent_trials does not reach a generator passed in: it is given its limit here."""
    if args.paused is None:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(max_concurrent=args.max_concurrent, **kwargs)
    from searchers.pausing import PauseAwareGenerator

    return PauseAwareGenerator(max_concurrent=args.max_concurrent, paused=args.paused, **kwargs)


def make_grid(args: MethodArgs) -> SearchPlan:
    from ray import tune

    space = {name: tune.grid_search(list(values)) for name, values in args.task.space.items()}
    # no generator: Tune makes one with max_concurrent_trials (but it would count the paused trials)
    return SearchPlan(search_alg=_generator(args) if args.paused else None, param_space=space, num_samples=1)


def make_random(args: MethodArgs) -> SearchPlan:
    return SearchPlan(_generator(args, random_state=args.seed), _choice_space(args.task), args.num_samples)


def make_hyperopt(args: MethodArgs) -> SearchPlan:
    try:
        from ray.tune.search.hyperopt import HyperOptSearch
        import hyperopt  # noqa: F401
    except ImportError as exc:
        raise ImportError("HyperOpt must be installed: pip install hyperopt") from exc
    from searchers.tpe_cache import IncrementalSuggest, lookup_searcher_class

    assert issubclass(lookup_searcher_class(), HyperOptSearch)
    searcher = lookup_searcher_class()(n_initial_points=n_initial_points(args.num_samples), random_state_seed=args.seed)
    searcher.algo = IncrementalSuggest(searcher.algo)  # the same suggestions, cheaper (searchers/tpe_cache.py)
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


def make_dpl(args: MethodArgs) -> SearchPlan:
    raise ValueError("searcher dpl runs under its own scheduler, freeze_thaw: build it with build_method")


def make_freeze_thaw(args: MethodArgs, decision_epochs=None, anchor: bool = False):
    """Freeze-thaw with DPL's power-law ensemble (searchers/freeze_thaw.py): its scheduler, which owns the model."""
    from searchers.freeze_thaw import FreezeThaw

    task = args.task
    return FreezeThaw(time_attr=task.resource_attr, max_t=task.max_t, space=_choice_space(task),
                      configurations=task.configurations(), epochs_param=task.epochs_param, seed=args.seed,
                      n_initial=min(n_initial_points(args.num_samples), args.num_samples),
                      decision_epochs=decision_epochs, anchor=anchor,
                      pause_disk_bytes=None if args.pause_disk_gb is None else args.pause_disk_gb * 2**30,
                      state_bytes=args.state_bytes)


def make_freeze_thaw_rung(args: MethodArgs):
    """Freeze-thaw deciding at ASHA's rungs only (a trial goes on to the next rung, not one epoch): the cheaper step."""
    from searchers.rung_math import rungs

    task = args.task
    return make_freeze_thaw(args, decision_epochs=rungs(min(task.grace_period, task.max_t), task.reduction_factor,
                                                        task.max_t))


def make_freeze_thaw_anchor(args: MethodArgs):
    return make_freeze_thaw(args, anchor=True)


def make_fifo(args: MethodArgs):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def make_asha(args: MethodArgs, brackets: int = 1):
    from searchers.asha_cutoff import ArrayCutoffASHA  # Ray's ASHAScheduler, its cutoff cheaper (same decisions)

    task = args.task
    return ArrayCutoffASHA(
        time_attr=task.resource_attr,  # epochs trained
        max_t=task.max_t,  # the largest epoch count in the space
        grace_period=min(task.grace_period, task.max_t),  # epochs: the first rung
        reduction_factor=task.reduction_factor,
        brackets=brackets,
    )


def make_promotion(args: MethodArgs, brackets: int = 1, anytime: bool = False, rule: str = "top",
                   choice: str = "value", first_bracket: int = 0):
    """Promotion ASHA; ``first_bracket`` b > 0 starts the rungs at grace_period x eta**b (capped at
    max_t): Hyperband's bracket b alone, for tasks whose first epochs mislead (docs/lcbench-bracket1)."""
    from searchers.promotion import PromotionASHA
    from searchers.rung_math import bracket_grace

    task = args.task
    grace = min(bracket_grace(task.grace_period, task.reduction_factor, first_bracket), task.max_t)
    return PromotionASHA(time_attr=task.resource_attr, max_t=task.max_t, grace_period=grace,
                         reduction_factor=task.reduction_factor,
                         pause_disk_bytes=None if args.pause_disk_gb is None else args.pause_disk_gb * 2**30,
                         state_bytes=args.state_bytes, brackets=brackets, seed=args.seed, anytime=anytime,
                         rule=rule, choice=choice, space=_choice_space(task) if choice == "curve" else None)


def make_promotion_anytime(args: MethodArgs):
    return make_promotion(args, anytime=True)


def make_promotion_curve(args: MethodArgs):
    return make_promotion(args, choice="curve")


def make_promotion_curve_anytime(args: MethodArgs):
    return make_promotion(args, anytime=True, choice="curve")


def make_promotion_bracket1(args: MethodArgs):
    return make_promotion(args, first_bracket=1)


def make_promotion_bracket1_anytime(args: MethodArgs):
    return make_promotion(args, anytime=True, first_bracket=1)


def make_promotion_quantile(args: MethodArgs):
    return make_promotion(args, rule="quantile")


def make_promotion_quantile_anytime(args: MethodArgs):
    return make_promotion(args, anytime=True, rule="quantile")


def _all_brackets(args: MethodArgs) -> int:
    from searchers.rung_math import n_brackets

    task = args.task
    return n_brackets(min(task.grace_period, task.max_t), task.reduction_factor, task.max_t)


def make_hyperband(args: MethodArgs):
    return make_asha(args, brackets=_all_brackets(args))


def make_hyperband_promotion(args: MethodArgs):
    return make_promotion(args, brackets=_all_brackets(args))


def make_shuffle(args: MethodArgs) -> SearchPlan:
    """Random search without repeats: every grid configuration at most once, in a seeded random
    order (Syne Tune's RandomSearch with ``restrict_configurations``). Ray's random search draws
    each value independently, so on a finite grid it repeats configurations: by the grid's size in
    trials about a third of them are repeats (1 - 1/e of the draws are new). Ray's generator yields
    the shuffled grid as its ``points_to_evaluate``."""
    import random

    grid = args.task.configurations()
    random.Random(args.seed).shuffle(grid)
    n = min(args.num_samples, len(grid))
    return SearchPlan(_generator(args, points_to_evaluate=grid[:n], random_state=args.seed),
                      _choice_space(args.task), n)


SEARCHERS: dict[str, Callable[[MethodArgs], SearchPlan]] = {
    "grid": make_grid,
    "random": make_random,
    "shuffle": make_shuffle,  # random search that never repeats a configuration
    "hyperopt": make_hyperopt,
    "bayesopt": make_bayesopt,
    "rungbo": make_rungbo,  # BayesOpt fitted at the highest well-populated ASHA rung (searchers/rungbo.py)
    "dpl": make_dpl,  # DPL's power-law ensemble choosing new configurations, under freeze_thaw only
}
NEVER_REPEAT = ("bayesopt", "rungbo", "shuffle", "dpl")  # searchers that never suggest a configuration twice
SCHEDULERS: dict[str, Callable[[MethodArgs], Any]] = {
    "fifo": make_fifo,
    "asha": make_asha,
    # promotion-type ASHA: trials pause at each rung, resumed inside its top 1/eta (searchers/promotion.py)
    "promotion": make_promotion,
    # the same, and once the searcher has nothing new, free workers resume the best-ranked paused trials
    # instead of idling: for runs bounded by time, not by trials (searchers/promotion.py, "anytime")
    "promotion_anytime": make_promotion_anytime,
    # asynchronous Hyperband: ASHA over every bracket of grace periods, a trial's drawn at random (Ray's
    # ASHAScheduler with brackets; Li et al. 2020, 3.3), stopping or pausing
    "hyperband": make_hyperband,
    "hyperband_promotion": make_hyperband_promotion,
    # every trial pausable; one learning-curve model picks each free worker's next step (searchers/freeze_thaw.py)
    "freeze_thaw": make_freeze_thaw,
}
# Variants of promotion that were measured on LCBench and not taken (docs/results/variants-tried.md):
# evidence, not product. Real runs (the command line, compare()) do not offer them; the replay runs
# them, so the committed tables that name them can be rebuilt and checked.
EXPERIMENTAL_SCHEDULERS: dict[str, Callable[[MethodArgs], Any]] = {
    # Syne Tune 0.13's promotion test: at or above the rung's (1 - 1/eta) quantile, from two trials on
    "promotion_quantile": make_promotion_quantile,
    "promotion_quantile_anytime": make_promotion_quantile_anytime,
    # the rung ranked by each trial's predicted value at the next rung (searchers/next_rung.py)
    "promotion_curve": make_promotion_curve,
    "promotion_curve_anytime": make_promotion_curve_anytime,
    # the first rung at grace_period x eta (Hyperband's bracket 1 alone: the first epochs not judged)
    "promotion_bracket1": make_promotion_bracket1,
    "promotion_bracket1_anytime": make_promotion_bracket1_anytime,
    # freeze-thaw deciding at the rungs only (measured for its cost against one-epoch steps)
    "freeze_thaw_rung": make_freeze_thaw_rung,
    "freeze_thaw_anchor": make_freeze_thaw_anchor,
}
ALL_SCHEDULERS = {**SCHEDULERS, **EXPERIMENTAL_SCHEDULERS}  # what the replay (and build_method) know
# What `searcher:*` in --methods expands to: the two every searcher is compared under (docs/DESIGN.md);
# the Hyperband and pausing schedulers are named.
STAR_SCHEDULERS = ("fifo", "asha")
# Schedulers that pause trials and resume them from their checkpoints (the rest only stop them).
PAUSING = frozenset({"promotion", "promotion_anytime", "promotion_quantile", "promotion_quantile_anytime",
                     "promotion_curve", "promotion_curve_anytime", "promotion_bracket1",
                     "promotion_bracket1_anytime", "hyperband_promotion", "freeze_thaw", "freeze_thaw_rung",
                     "freeze_thaw_anchor"})
# A searcher and schedulers that only run together: the scheduler owns the model the searcher asks.
PAIRED = {"dpl": ("freeze_thaw", "freeze_thaw_rung", "freeze_thaw_anchor")}


def pairing_error(searcher: str, scheduler: str) -> str | None:
    """Why a searcher and a scheduler cannot run together (PAIRED), or None."""
    for partner, schedulers in PAIRED.items():
        if (searcher == partner) != (scheduler in schedulers):
            return (f"method {searcher}:{scheduler}: searcher {partner} runs under {' or '.join(schedulers)} only, "
                    f"and they only with {partner}")
    return None


def build_method(searcher: str, scheduler: str, args: MethodArgs) -> tuple[SearchPlan, Any]:
    """The searcher and the scheduler of one method, wired to each other: the one place a real run
    (experiments.tuning) and the replay build a method, so the replay simulates what a run does.
    Under a pausing scheduler the searcher's concurrency limit counts paused trials out, and a
    model-based searcher hears a paused trial's last result when it is stopped (searchers/pausing.py)."""
    if pairing_error(searcher, scheduler):
        raise ValueError(pairing_error(searcher, scheduler))
    sched = ALL_SCHEDULERS[scheduler](args)
    if scheduler not in PAUSING:
        return SEARCHERS[searcher](args), sched
    if args.max_concurrent < 1:
        raise ValueError(f"scheduler {scheduler} needs a limit on the trials at once (max_concurrent >= 1)")
    if searcher in PAIRED:
        from searchers.freeze_thaw import FreezeThawSearcher

        plan = SearchPlan(FreezeThawSearcher(sched), _choice_space(args.task), min(args.num_samples, args.task.grid_size))
    else:
        plan = SEARCHERS[searcher](dataclasses.replace(args, paused=sched.paused_ids))
    from ray.tune.search import Searcher

    if isinstance(plan.search_alg, Searcher):
        from searchers.pausing import PauseAwareLimiter

        plan.search_alg = PauseAwareLimiter(plan.search_alg, args.max_concurrent, sched.paused_ids)
    return plan, sched
# The scheduler a searcher named alone in --methods runs with: the baselines run to completion
# (as a practitioner would), the model-based searchers under ASHA (docs/DESIGN.md).
DEFAULT_SCHEDULER = {"grid": "fifo", "random": "fifo", "shuffle": "fifo",
                     "hyperopt": "asha", "bayesopt": "asha", "rungbo": "asha", "dpl": "freeze_thaw"}
# What `run_all.py` compares when --methods is not given: the baselines, the proposed methods,
# and random search under ASHA, the control that tells a gain of the searcher from one of the
# scheduler (docs/DESIGN.md, "The methods compared").
DEFAULT_METHODS = (("grid", "fifo"), ("random", "fifo"), ("random", "asha"), ("hyperopt", "asha"),
                   ("bayesopt", "asha"))
