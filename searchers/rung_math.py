"""The arithmetic of ASHA's rungs and of promotion's tests, shared by the pausing scheduler
(searchers/promotion.py), its factories and the tests: where the rungs are, how many brackets
Hyperband has and how Ray draws a trial's, and how many of a rung's trials may go on (Li et al.'s
count, Syne Tune 0.13's quantile)."""

from __future__ import annotations

import math


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs at which trials are compared: grace_period x reduction_factor**k below max_t."""
    levels, level = [], grace_period
    while level < max_t:
        levels.append(level)
        level *= reduction_factor
    return levels


def bracket_grace(grace_period: int, reduction_factor: int, bracket: int) -> int:
    """Where Hyperband's bracket ``bracket`` has its first rung: grace_period x reduction_factor**bracket."""
    return grace_period * reduction_factor**bracket


def n_brackets(grace_period: int, reduction_factor: int, max_t: int) -> int:
    """Hyperband's full set of brackets: one per rung, and one with none (trials run to the end)."""
    return len(rungs(grace_period, reduction_factor, max_t)) + 1


def bracket_weights(sizes: list[int]) -> list[float]:
    """Ray's ASHA's draw of a new trial's bracket (async_hyperband.py, on_trial_add): e**(rungs - most rungs)."""
    top = max(sizes)
    return [math.exp(n - top) for n in sizes]


class RankedValues:
    """A rung's ranking read as its signed values, best first, without copying it (the quantile reads two)."""

    def __init__(self, ranked: list[tuple]):
        self._ranked = ranked

    def __len__(self):
        return len(self._ranked)

    def __getitem__(self, i: int) -> float:
        return -self._ranked[i][0]


def quantile_cutoff(values_best_first, reduction_factor: int) -> float | None:
    """The (1 - 1/reduction_factor) quantile of values sorted best (largest) first, as Syne Tune 0.13's
    Rung.quantile computes it for mode "max" (numpy.quantile's linear interpolation); None below two values."""
    n = len(values_best_first)
    if n < 2:
        return None
    virtual = (n - 1) * (1 - 1 / reduction_factor) + 1
    index = int(virtual)
    g = 1 - (virtual - index)
    left = n - index - 1
    return g * values_best_first[left + 1] + (1 - g) * values_best_first[left]


def max_promotions(n: int, reduction_factor: int) -> int:
    """How many of n trials recorded at a rung go on: floor(n / reduction_factor)."""
    return math.floor(n / reduction_factor)
