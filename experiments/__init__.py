"""Experiment specs and the runner that turns a spec into a run folder; ``experiments.compare``
is the same from Python (experiments/api.py)."""

from core import check_not_shadowed

# the folder a user runs from comes first on sys.path: a package of theirs named like one of ours
# must be one clear error here, not a confusing one deep inside (core.check_not_shadowed)
check_not_shadowed("analysis", "searchers", "trainables")


def __getattr__(name):
    # Deliberately lazy (PEP 562): the API imports the runner (Ray, torch); `experiments.spec` must not.
    if name == "compare":
        from experiments.api import compare

        return compare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
