"""HyperOpt's TPE with its posterior graph built once per search space instead of once per suggestion.

``hyperopt.tpe.suggest`` starts every call with ``build_posterior_wrapper(domain, prior_weight,
gamma)``: it clones the whole search-space graph into the TPE posterior graph, placeholders
(``pyll.Literal``) where the observations go, which ``suggest`` then fills through ``memo``. The
graph depends on those three arguments only, so building it anew each time is pure overhead: a
fifth of a HyperOpt replay on LCBench (4.4 of 19.8 profiled seconds over 1,000 suggestions; the
rest grows with the trials and stays). Ours keeps the first graph per (domain, prior_weight, gamma)
and hands it back; ``suggest`` itself (sampling, the split, the EI ranking) is HyperOpt's, untouched.
Likewise ``miscs_to_idxs_vals``, which ``suggest`` calls on every trial's record to collect the
observed values (another fifth, growing with the trials): the records of earlier trials never
change and new ones come last (sorted by trial id), so ours converts only the new records and
extends the lists kept from the last call; if the earlier records are not the same objects in the
same order, it converts them all again.
The suggestions are identical: the cached graph is evaluated in the same order with the same seeded
generator, and the observations are the same lists (tests/test_tpe_cache.py compares runs with and
without the caches).
"""

from __future__ import annotations

import functools
import weakref

from hyperopt import tpe

_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # domain -> {(prior_weight, gamma): graph}


def _cached_wrapper(build):
    def build_posterior_wrapper(domain, prior_weight, gamma):
        per_domain = _graphs.setdefault(domain, {})
        key = (prior_weight, gamma)
        if key not in per_domain:
            per_domain[key] = build(domain, prior_weight, gamma)
        return per_domain[key]

    return build_posterior_wrapper


class _IncrementalObservations:
    """``miscs_to_idxs_vals`` for one searcher, converting only the records it has not seen."""

    def __init__(self, convert):
        self.convert = convert
        self.keys: list | None = None
        self.seen: list = []  # the records converted so far, in order
        self.idxs: dict = {}
        self.vals: dict = {}

    def __call__(self, miscs, keys=None):
        if keys is None:  # hyperopt's own inference of the keys: leave it to hyperopt
            return self.convert(miscs, keys)
        keys = list(keys)
        same = keys == self.keys and len(miscs) >= len(self.seen) and all(
            a is b for a, b in zip(self.seen, miscs))
        if not same:
            self.keys, self.seen = keys, []
            self.idxs, self.vals = {k: [] for k in keys}, {k: [] for k in keys}
        idxs, vals = self.convert(miscs[len(self.seen):], keys)
        for k in keys:
            self.idxs[k].extend(idxs[k])
            self.vals[k].extend(vals[k])
        self.seen = list(miscs)
        return {k: list(v) for k, v in self.idxs.items()}, {k: list(v) for k, v in self.vals.items()}  # copies


def cached_posterior(algo):
    """``algo`` (``tpe.suggest`` or a ``functools.partial`` of it, as Ray's HyperOptSearch holds it)
    with the posterior graph cached and the observations converted incrementally. hyperopt looks
    both functions up as module globals, so they are swapped in for the duration of our call only
    (Tune calls searchers from one thread) and every other use of hyperopt in the process is left
    as it was."""
    observations = _IncrementalObservations(tpe.miscs_to_idxs_vals)

    @functools.wraps(algo)
    def suggest(*args, **kwargs):
        build, convert = tpe.build_posterior_wrapper, tpe.miscs_to_idxs_vals
        tpe.build_posterior_wrapper, tpe.miscs_to_idxs_vals = _cached_wrapper(build), observations
        try:
            return algo(*args, **kwargs)
        finally:
            tpe.build_posterior_wrapper, tpe.miscs_to_idxs_vals = build, convert

    return suggest
