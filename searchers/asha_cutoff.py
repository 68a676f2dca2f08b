"""Ray's ASHA with its rung cutoff computed from an array kept per rung, not from a list made anew.

``_Bracket.cutoff`` turns every value recorded at a rung into a new Python list and a new NumPy
array at every result that reaches the rung: work that grows with the trials, so a run's ASHA cost
grows with their square. Real runs start tens of trials and never notice; the LCBench replays start
up to ~50,000 (HyperOpt under ASHA on a table where its favourite configurations train in
milliseconds), and there that cutoff took most of a replay's time. Here each rung's values are
appended to a float64 array once, and the cutoff is ``np.nanpercentile`` of it, as Ray computes it:
the percentile depends on the values, not on their order, so it is the same number. Where a value
is not a Python float or int (NumPy's array of a list of float32s would be float32), that rung
falls back to Ray's own computation. Ray offers no hook for this: hence our own.
"""

from __future__ import annotations

import numpy as np
from ray.tune.schedulers.async_hyperband import AsyncHyperBandScheduler, _Bracket


class _Values:
    """One rung's recorded values in arrival order, as a growing float64 array."""

    def __init__(self, recorded: dict):
        self.recorded, self.array, self.n, self.exact = recorded, np.empty(64), 0, True
        self.sync()

    def sync(self):
        new = len(self.recorded) - self.n
        if new <= 0:
            return
        values = [v for _, v in zip(range(new), reversed(self.recorded.values()))][::-1]  # the last `new`
        self.exact = self.exact and all(type(v) in (float, int) for v in values)
        if self.n + new > len(self.array):
            self.array = np.resize(self.array, max(2 * len(self.array), self.n + new))
        self.array[self.n:self.n + new] = values
        self.n += new


class _ArrayBracket(_Bracket):
    def cutoff(self, recorded):
        if not recorded:
            return None
        kept = self.__dict__.setdefault("_values", {})
        values = kept.get(id(recorded))
        if values is None or values.recorded is not recorded or values.n > len(recorded):
            values = kept[id(recorded)] = _Values(recorded)  # first use, or a restored bracket
        values.sync()
        if not values.exact:
            return super().cutoff(recorded)
        return np.nanpercentile(values.array[:values.n], (1 - 1 / self.rf) * 100)


class ArrayCutoffASHA(AsyncHyperBandScheduler):
    """Ray's ASHAScheduler, its brackets computing the same cutoffs without rebuilding their lists."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for bracket in self._brackets:
            bracket.__class__ = _ArrayBracket
