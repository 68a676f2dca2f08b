"""The reference tasks. Each lives in its own module, imported only when it is used, so that
listing or validating task names costs nothing (``run_all.py --help`` imports no torch)."""

from __future__ import annotations

import importlib

# task name -> module that defines TASK (a trainables.base.TaskSpec)
TASK_MODULES = {
    "breast_cancer": "trainables.breast_cancer",
    "cifar10": "trainables.cifar10",
    "imdb": "trainables.imdb",
}


def task_names() -> list[str]:
    return sorted(TASK_MODULES)


def get_task(name: str):
    """The TaskSpec of a task, importing its module."""
    if name not in TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(task_names())}")
    return importlib.import_module(TASK_MODULES[name]).TASK
