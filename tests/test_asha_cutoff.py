"""Ray's ASHA with the rung cutoff computed from an array kept per rung (searchers/asha_cutoff.py):
the same cutoffs and the same decisions as Ray's own, NaN, ties, integers and a restore included."""

from __future__ import annotations

import pickle

import numpy as np
from ray.tune.schedulers.async_hyperband import _Bracket

from searchers.asha_cutoff import ArrayCutoffASHA, _ArrayBracket


class FakeTrial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def test_the_cutoffs_and_decisions_are_rays():
    rng = np.random.default_rng(0)
    theirs = _Bracket(min_t=1, max_t=27, reduction_factor=3, s=0)
    ours = _Bracket(min_t=1, max_t=27, reduction_factor=3, s=0)
    ours.__class__ = _ArrayBracket
    for i in range(3000):
        trial = FakeTrial(str(i))
        for epoch in range(1, 28):
            kind = rng.integers(0, 10)
            value = float("nan") if kind == 0 else float(rng.integers(0, 5)) if kind < 4 else \
                int(rng.integers(0, 5)) if kind == 4 else float(rng.normal())  # ties, ints, NaN
            if i == 1500 and epoch == 1:  # a restore (--resume) in the middle
                ours = pickle.loads(pickle.dumps(ours))
            for milestone, recorded in ours._rungs:
                if epoch == milestone and trial.trial_id not in recorded and recorded:
                    mine, rays = ours.cutoff(recorded), np.nanpercentile(list(recorded.values()), 200 / 3)
                    assert mine == rays or (np.isnan(mine) and np.isnan(rays)), (i, epoch)
            decision = ours.on_result(trial, epoch, value)
            assert decision == theirs.on_result(trial, epoch, value), (i, epoch)
            if decision == "STOP":
                break
    for (_, mine), (_, rays) in zip(ours._rungs, theirs._rungs):  # the same trials and values at every rung
        assert list(mine) == list(rays)
        assert np.array_equal(np.array(list(mine.values()), float), np.array(list(rays.values()), float), equal_nan=True)
    assert sum(len(r) for _, r in ours._rungs) > 3000


def test_a_rung_with_float32_values_falls_back_to_rays_arithmetic():
    bracket = _Bracket(min_t=1, max_t=9, reduction_factor=3, s=0)
    bracket.__class__ = _ArrayBracket
    recorded = {str(i): np.float32(v) for i, v in enumerate([0.1, 0.7, 0.3, 0.9])}
    assert bracket.cutoff(recorded) == np.nanpercentile(list(recorded.values()), 200 / 3)
    assert ArrayCutoffASHA(max_t=9, brackets=2)._brackets[1].__class__ is _ArrayBracket
