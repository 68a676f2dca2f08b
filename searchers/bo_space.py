"""How a Ray Tune search space is mapped to bayes_opt's typed parameters (searchers/bayesopt.py).

* ``tune.choice`` of numbers (the grids of this project): an integer parameter over the index
  of the sorted values. For values spaced by a constant factor (1e-5, 1e-4, 1e-3; 16, 32, 64)
  the index is the log scale; bayes_opt rounds integer parameters inside its kernel.
* ``tune.choice`` of anything else: a categorical parameter (one-hot in the kernel).
* ``tune.loguniform`` / ``tune.uniform``: a float on [0, 1] (log10 of the range first).
  ``tune.randint``: an integer parameter. A choice with a single value is a constant.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Uniform


class Param:
    """One searched hyperparameter: its bayes_opt bounds and the mapping to and from values."""

    def __init__(self, name: str, kind: str, bounds: Any, values: list | None = None, low=0.0, high=1.0):
        self.name, self.kind, self.bounds, self.values = name, kind, bounds, values
        self.low, self.high = low, high  # a float's range (log10 of it for "log"); bounds are (0, 1)

    def decode(self, x):
        if self.kind == "ordinal":
            return self.values[int(round(float(x)))]
        if self.kind == "categorical":
            return self.values[[str(v) for v in self.values].index(x)]
        if self.kind == "int":
            return int(round(float(x)))
        value = self.low + float(x) * (self.high - self.low)  # floats are searched on [0, 1]
        return float(10.0 ** value) if self.kind == "log" else value

    def encode(self, value):
        if self.kind == "ordinal":
            return int(self.values.index(value))
        if self.kind == "categorical":
            return str(value)
        if self.kind == "int":
            return value
        value = math.log10(value) if self.kind == "log" else float(value)
        return (value - self.low) / (self.high - self.low)


def convert_domain(name: str, domain) -> Param:
    if isinstance(domain, Categorical):
        values = list(domain.categories)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            values = sorted(values)
            return Param(name, "ordinal", (0, len(values) - 1, int), values)
        return Param(name, "categorical", [str(v) for v in values], values)
    sampler = domain.get_sampler() if isinstance(domain, (Float, Integer)) else None
    if isinstance(domain, Float) and isinstance(sampler, LogUniform):
        return Param(name, "log", (0.0, 1.0), low=math.log10(domain.lower), high=math.log10(domain.upper))
    if isinstance(domain, Float) and isinstance(sampler, Uniform):
        return Param(name, "float", (0.0, 1.0), low=float(domain.lower), high=float(domain.upper))
    if isinstance(domain, Integer) and isinstance(sampler, Uniform):
        return Param(name, "int", (int(domain.lower), int(domain.upper) - 1, int))  # randint excludes upper
    raise ValueError(
        f"bayesopt cannot search {name!r} ({type(domain).__name__}); use tune.choice, "
        "tune.uniform, tune.loguniform or tune.randint")
