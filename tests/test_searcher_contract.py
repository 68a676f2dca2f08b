"""One contract, every searcher: on a cheap analytic objective, through the real runner path
(``experiments.tuning.tune_method``), each searcher finishes its budget, stays inside the
space, reproduces its suggestions under a fixed seed, and survives NaN results."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from searchers import PAIRED, SEARCHERS
from tests.analytic import SPACE, TASK
from tests.tuning import tune

RESOURCES = {"cpu": 1, "gpu": 0}
# The grid runs every configuration: keep its space small.
SMALL = dataclasses.replace(TASK, space={**SPACE, "x": (1, 4, 5), "learning_rate": (1e-3,)})


def suggested(results, space):
    return [tuple(r.config[name] for name in space) for r in results]


def run(searcher, tmp_path, seed, scheduler="fifo", num_samples=8, max_concurrent=1, fixed_config=None):
    task = SMALL if searcher == "grid" else TASK
    scheduler = PAIRED[searcher][0] if searcher in PAIRED else scheduler  # dpl runs under freeze_thaw only
    tuned = tune(task, searcher, scheduler, seed, tmp_path, num_samples=num_samples, max_concurrent=max_concurrent,
                 resources=RESOURCES, fixed_config=fixed_config)
    return task, tuned.results


# dpl pauses its trials at every epoch (Tune saves and restores each): its runs take minutes, so they are
# in the slow tier; its fast checks are tests/test_freeze_thaw.py and the replay agreement in test_replay.
EVERY_SEARCHER = [pytest.param(s, marks=pytest.mark.slow) if s in PAIRED else s for s in SEARCHERS]


@pytest.mark.parametrize("searcher", EVERY_SEARCHER)
def test_finishes_inside_the_space_and_reproduces(ray_session, tmp_path, searcher):
    task, first = run(searcher, tmp_path / "a", seed=7)
    expected = task.grid_size if searcher == "grid" else 8
    assert len(first) == expected
    assert all(r.error is None for r in first)
    for config in suggested(first, task.space):
        for name, value in zip(task.space, config):
            assert value in task.space[name], f"{searcher} suggested {name}={value!r} outside the space"
    assert all(math.isfinite(r.metrics["val_accuracy"]) for r in first)
    if searcher == "grid":
        assert len(set(suggested(first, task.space))) == task.grid_size
        return
    _, again = run(searcher, tmp_path / "b", seed=7)
    assert suggested(first, task.space) == suggested(again, task.space), "a fixed seed must reproduce"
    _, other = run(searcher, tmp_path / "c", seed=8)
    assert suggested(first, task.space) != suggested(other, task.space), "another seed must search differently"


@pytest.mark.parametrize("searcher", EVERY_SEARCHER)
def test_nan_results_do_not_crash_it(ray_session, tmp_path, searcher):
    task, results = run(searcher, tmp_path, seed=3, scheduler="asha", num_samples=10, max_concurrent=2,
                        fixed_config={"nan_x": (4, 5)})
    assert len(results) == (task.grid_size if searcher == "grid" else 10)
    assert all(r.error is None for r in results)
    values = [r.metrics["val_accuracy"] for r in results]
    assert any(math.isnan(v) for v in values), "the objective never returned NaN: the test proves nothing"
    assert any(math.isfinite(v) for v in values)


def test_shuffle_runs_every_configuration_once_where_random_repeats(ray_session, tmp_path):
    """shuffle is random search without repeats: asked for more trials than the grid has, it runs
    each configuration once and ends; Ray's random search, asked for as many as the grid has,
    repeats some (about a third of the draws are repeats by then)."""
    grid = sorted(itertools.product(*SMALL.space.values()))
    shuffled = tune(SMALL, "shuffle", "fifo", 5, tmp_path / "s", num_samples=len(grid) + 5, max_concurrent=1,
                    resources=RESOURCES).results
    assert sorted(suggested(shuffled, SMALL.space)) == grid
    assert suggested(shuffled, SMALL.space) != grid  # in a random order, not the grid's
    drawn = tune(SMALL, "random", "fifo", 5, tmp_path / "r", num_samples=len(grid), max_concurrent=1,
                 resources=RESOURCES).results
    assert len(set(suggested(drawn, SMALL.space))) < len(grid)
