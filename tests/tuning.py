"""Tune one method of a task the way the runner does, for tests that check Tune's side
(failures, retries, replay against real runs, the searcher contract)."""

from __future__ import annotations

from experiments.collect import collect_trials
from experiments.plan import Method, RunPlan
from experiments.tuning import Tuned, tune_method

CPU_ONLY = {"cpu": 1, "gpu": 0}


def tune(task, searcher: str, scheduler: str, seed: int, path, *, num_samples: int = 1, max_concurrent: int = 2,
         resources=CPU_ONLY, fixed_config=None, max_failures: int = 0, keep_checkpoints: str = "all",
         gpu_shares=None, time_budget_s=None) -> Tuned:
    plan = RunPlan(task=task, num_samples=num_samples, max_concurrent=max_concurrent, resources=resources,
                   fixed_config=fixed_config or {}, max_failures=max_failures, keep_checkpoints=keep_checkpoints,
                   gpu_shares=gpu_shares or {}, time_budget_s=time_budget_s)
    return tune_method(plan, Method(searcher, scheduler, seed), path)


def collect(tuned: Tuned, task, searcher: str, scheduler: str, seed: int):
    """(trials, curves, results by trial id) of a ``tune`` call."""
    collected = collect_trials(tuned.results, task, Method(searcher, scheduler, seed), tuned.started)
    return list(collected.trials), list(collected.curves), collected.results
