"""Experiment specs and the runner that turns a spec into a run folder."""

from core import check_not_shadowed

# the folder a user runs from comes first on sys.path: a package of theirs named like one of ours
# must be one clear error here, not a confusing one deep inside (core.check_not_shadowed)
check_not_shadowed("analysis", "searchers", "trainables")
