"""The Python API: what ``lowres-tune`` does, from a notebook or a script.

    from experiments import compare
    run = compare("diabetes_task.py", methods="grid,random:asha", seeds=[0, 1], budget="smoke")
    run.summary[["searcher", "scheduler", "seed", "best_val_rmse", "test_rmse"]]

The same ExperimentSpec checks the command line makes, before anything is written: a bad value
raises ``SpecError`` (a ValueError) with the command line's one-line message (a notebook shows
just that line). The result is the
run folder loaded as ``analysis.load_run`` loads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from core.task import TaskSpec
from experiments.spec import (DEFAULT_RUN_METHODS, ExperimentSpec, SpecError, check_seeds, format_methods,
                              parse_methods, parse_seeds)

# what the keyword arguments may set besides task, methods and seeds: ExperimentSpec's other fields
SETTINGS = tuple(f.name for f in dataclasses.fields(ExperimentSpec) if f.name not in ("task", "methods", "seeds", "budget"))


def compare(task: str | TaskSpec, methods: str | Iterable[tuple[str, str]] | None = None,
            seeds: int | str | Iterable[int] = 0, budget: str = "full", progress: bool = False, **settings):
    """Tune ``task`` with every method and seed into a new run folder; returns it loaded
    (``analysis.Run``: summary, trials, curves and resources as DataFrames).

    ``task``: a built-in name (``"breast_cancer"``), a task file (``"path/my_task.py"``), a module
    (``"my_package.my_task"``) or a ``TaskSpec`` (its trainable named by import path; a run of an
    object cannot be resumed from another process). ``methods``: as ``--methods``
    (``"grid,random:asha"``) or ``[(searcher, scheduler), ...]``; None: the default methods.
    ``seeds``: an int, ``"0,1,2"`` or a list. ``settings``: any other setting of the command line,
    by ExperimentSpec's name (``results_dir``, ``num_samples``, ``max_concurrent``,
    ``gpus_per_trial``, ``task_options={"data_dir": ...}``, ``time_budget="90m"`` or seconds, ...).
    ``methods="recommended"`` (or a list with it): the method the LCBench evidence picks for the budget. ``progress``: a progress bar per
    method (tqdm's notebook bar in Jupyter) and the pointers the command line prints; by default
    nothing is printed but errors: the returned run carries the table (``run.table``) and its folder
    (``run.path``).

    Raises ``SpecError`` for bad settings (nothing written), ``RunFailed`` where a method completed
    no trial (the run folder holds the tables and the errors), ``Interrupted`` on Ctrl-C (resumable)."""
    from analysis import load_run
    from experiments.runner import run

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SpecError(f"unknown setting {unknown[0]!r}; allowed: {', '.join(SETTINGS)}")
    if isinstance(settings.get("time_budget"), str):  # "90m", "4h", as on the command line
        from core.cli import parse_duration

        try:
            settings["time_budget"] = parse_duration(settings["time_budget"])
        except ValueError as exc:
            raise SpecError(f"time_budget: {exc}") from None
    if "quiet" in settings:  # the command line's flag; here it is progress's opposite
        quiet = settings.pop("quiet")
        progress = progress and not quiet
    spec = ExperimentSpec(task=_task_reference(task), methods=_methods(methods), seeds=_seeds(seeds), budget=budget,
                          quiet=not progress, **{**settings, **({"results_dir": Path(settings["results_dir"])}
                                                               if "results_dir" in settings else {})})
    return load_run(run(spec, out=print if progress else _silent))


def _silent(*args, **kwargs) -> None:
    """The API's stand-in for the lines the command line prints even with --quiet."""


def _task_reference(task) -> str:
    if isinstance(task, TaskSpec):
        from trainables import register_task

        try:
            return register_task(task)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    if not isinstance(task, str):
        raise SpecError(f"task must be a name, a file, a module or a TaskSpec, got {type(task).__name__}")
    from trainables import task_file

    return task_file(task) or task


def _methods(methods) -> tuple[tuple[str, str], ...]:
    if methods is None:
        return DEFAULT_RUN_METHODS
    if isinstance(methods, str):
        return parse_methods(methods)
    methods = list(methods)
    if methods and all(isinstance(m, str) for m in methods):  # ["grid", "random:asha"]
        return parse_methods(",".join(methods))
    try:
        text = format_methods(methods)
    except (TypeError, ValueError):
        raise SpecError(f"methods must be 'grid,random:asha' or [(searcher, scheduler), ...], got {methods!r}") from None
    return parse_methods(text)


def _seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    seeds = (seeds,) if isinstance(seeds, int) else tuple(seeds)
    check_seeds(seeds)
    return seeds
