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
And ``ap_split_trials``, the pyll node that splits each hyperparameter's observations into the
good and the bad ones by loss: hyperopt tests every observation's trial id against a Python set,
one at a time, at every suggestion (a quarter of a HyperOpt replay under ASHA once thousands of
trials have reported); ours does the same membership test with ``np.isin``, in the same order.
Finally Ray's ``HyperOptSearch._get_hyperopt_trial`` finds a trial's record by scanning every
record, at every reported epoch (a tenth of the replay, quadratic): ``LookupHyperOptSearch`` keeps
an index by trial id. (Neither library offers a hook for any of this: hence our own.)
The suggestions are identical: the cached graph is evaluated in the same order with the same seeded
generator, and the observations are the same lists (tests/test_tpe_cache.py compares runs with and
without the caches).
"""

from __future__ import annotations

import functools
import weakref

import numpy as np
from hyperopt import tpe
from hyperopt.pyll import scope

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


def ap_split_trials(o_idxs, o_vals, l_idxs, l_vals, gamma, gamma_cap=tpe.DEFAULT_LF):
    """hyperopt.tpe.ap_split_trials with the membership test vectorized: the same arrays."""
    o_idxs, o_vals, l_idxs, l_vals = list(map(np.asarray, [o_idxs, o_vals, l_idxs, l_vals]))
    n_below = min(int(np.ceil(gamma * np.sqrt(len(l_vals)))), gamma_cap)
    l_order = np.argsort(l_vals)
    below = o_vals[np.isin(o_idxs, l_idxs[l_order[:n_below]])] if len(o_idxs) else o_vals[:0]
    above = o_vals[np.isin(o_idxs, l_idxs[l_order[n_below:]])] if len(o_idxs) else o_vals[:0]
    # hyperopt builds them from Python lists: an empty one comes back as float64
    return (below if len(below) else np.asarray([])), (above if len(above) else np.asarray([]))


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
        split = scope._impls["ap_split_trials"]  # pyll evaluates a node by its name's implementation
        tpe.build_posterior_wrapper, tpe.miscs_to_idxs_vals = _cached_wrapper(build), observations
        scope._impls["ap_split_trials"] = ap_split_trials
        try:
            return algo(*args, **kwargs)
        finally:
            tpe.build_posterior_wrapper, tpe.miscs_to_idxs_vals = build, convert
            scope._impls["ap_split_trials"] = split

    return suggest


def lookup_searcher_class():
    """Ray's HyperOptSearch with its per-result record lookup indexed by trial id (Ray imported
    only when a HyperOpt searcher is made)."""
    from ray.tune.search.hyperopt import HyperOptSearch

    class LookupHyperOptSearch(HyperOptSearch):
        def _get_hyperopt_trial(self, trial_id):
            if trial_id not in self._live_trial_mapping:
                return None
            tid = self._live_trial_mapping[trial_id][0]
            records = self._hpopt_trials.trials  # a new list after each refresh; the records are the same
            key = (id(records), len(records))
            if getattr(self, "_index_key", None) != key:
                self._index = {t["tid"]: t for t in reversed(records)}  # the first of equal tids wins, as in Ray's
                self._index_key = key
            if tid not in self._index:
                raise IndexError("list index out of range")  # what Ray's [...][0] raises
            return self._index[tid]

    return LookupHyperOptSearch
