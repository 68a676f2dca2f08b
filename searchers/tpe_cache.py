"""HyperOpt's TPE, the same suggestions at a per-suggestion cost that no longer grows in Python with the history.

Under ASHA at an equal compute budget, TPE is asked for thousands of trials (LCBench: ~7,000 within
25% of a grid's compute), and hyperopt's ``tpe.suggest`` redoes, at every suggestion, work that
depends on every trial so far, in Python: it clones the search-space graph into its posterior graph,
walks every trial record to collect the losses and the observed values, sorts them by trial id,
splits each hyperparameter's observations into good and bad one membership test at a time; Ray's
``HyperOptSearch`` rebuilds hyperopt's list of valid trials (``Trials.refresh``) three times per trial
and finds a trial's record by scanning every record, at every reported epoch. Measured
(``benchmarks/tpe_cost.py``): that grows by ~5 ms per suggestion per 1,000 trials. Neither library offers
a hook for any of it: hence our own, each piece the smallest change that keeps the suggestions identical.

- ``IncrementalSuggest`` is ``tpe.suggest`` with its bookkeeping kept between calls: the posterior
  graph is built once per (domain, prior_weight, gamma); trial ids, losses and observed values are
  appended for new records only (a record's configuration never changes, and its loss is final once
  set, so only records still without a loss are looked at again). The math, sampling the candidates
  and ranking them by expected improvement, is hyperopt's own graph, evaluated with the same inputs
  and the same seeded generator. Where its assumptions do not hold (a record gone from the list, as
  an errored trial's is; ids out of order; ``from_tid``), it starts over from the records, so it is
  never wrong, only slower.
- ``ap_split_trials``: the good/bad split with the membership test vectorized (``np.isin``), the
  good trials found once per suggestion (not once per hyperparameter) by selection, not a full sort,
  and, unlike hyperopt's, the same on every CPU where losses tie (``good_trials``).
- ``IncrementalTrials``: ``Trials.refresh`` that appends the records added since the last call; the
  full rebuild runs after a trial errors (hyperopt then drops its record), the only state change
  that removes one.
- ``LookupHyperOptSearch``: Ray's searcher with its record lookup indexed by trial id.

tests/test_tpe_cache.py compares suggestions with and without all of this (hyperopt's ties then
broken as ours), errors included.
"""

from __future__ import annotations

import contextlib
import functools
import weakref

import numpy as np
from hyperopt import base, pyll, rand, tpe
from hyperopt.pyll import scope

_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # domain -> {(prior_weight, gamma): graph}


def _posterior(domain, prior_weight, gamma):
    per_domain = _graphs.setdefault(domain, {})
    key = (prior_weight, gamma)
    if key not in per_domain:
        per_domain[key] = tpe.build_posterior_wrapper(domain, prior_weight, gamma)
    return per_domain[key]


_split_order: list = [None, None, None]  # (l_idxs, l_vals, (ids, losses, {n_below: good})) of the last split


class _TiesByPosition:
    """numpy as hyperopt.tpe sees it while we evaluate TPE, but for argsort's order among equal values:
    by position. hyperopt sorts with np.argsort's default, whose order among ties is the CPU's (see
    ``good_trials``), in two places where that order changes the result: the good/bad split, and
    ``adaptive_parzen_normal``, where each observed value's bandwidth comes from its neighbours in
    sorted order and its weight (recent trials weigh more) follows it, so tied values swap bandwidths."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def argsort(a, axis=-1, kind=None, order=None, **kwargs):
        return np.argsort(a, axis=axis, kind="stable" if kind is None else kind, order=order, **kwargs)


_TIES_BY_POSITION = _TiesByPosition()


@contextlib.contextmanager
def _our_split():
    """For one evaluation of the posterior graph: our ap_split_trials (pyll finds a node's function by
    its name), computed afresh (the loss array of the last call may have changed in place), and ties
    ordered by position wherever hyperopt sorts."""
    split, hyperopt_numpy = scope._impls["ap_split_trials"], tpe.np
    scope._impls["ap_split_trials"], tpe.np = ap_split_trials, _TIES_BY_POSITION
    _split_order[:] = [None, None, None]
    try:
        yield
    finally:
        scope._impls["ap_split_trials"], tpe.np = split, hyperopt_numpy
        _split_order[:] = [None, None, None]


def good_trials(l_vals: np.ndarray, n_below: int) -> np.ndarray:
    """Which losses are TPE's good ones: the ``n_below`` smallest, ties broken by position (the order
    the trials were recorded in). hyperopt takes the first ``n_below`` of ``np.argsort(l_vals)``, whose
    order among equal values is the CPU's: numpy sorts with AVX-512, AVX2 or plain code, and each
    leaves ties in its own order (three orders for one array on one machine, switched by
    NPY_DISABLE_CPU_FEATURES). Losses tie at the split wherever configurations repeat: in 99% of the
    suggestions of one LCBench replay under ASHA (126025, seed 0), and on a small validation split,
    whose accuracies take few values. So TPE's suggestions, and our committed replay rows, depended
    on the machine. By position they do not, and a selection costs O(n) where the sort cost O(n log n)."""
    good = np.zeros(len(l_vals), dtype=bool)
    if n_below <= 0:
        return good
    if n_below >= len(l_vals):
        good[:] = True
        return good
    kth = np.partition(l_vals, n_below - 1)[n_below - 1]
    if np.isnan(kth):  # fewer real losses than n_below: NaNs last, as in a sort
        good[np.argsort(l_vals, kind="stable")[:n_below]] = True
        return good
    good = l_vals < kth
    good[np.flatnonzero(l_vals == kth)[:n_below - int(good.sum())]] = True
    return good


def ap_split_trials(o_idxs, o_vals, l_idxs, l_vals, gamma, gamma_cap=tpe.DEFAULT_LF):
    """hyperopt.tpe.ap_split_trials with the membership test vectorized and ties at the split broken
    by position (``good_trials``). Every hyperparameter of a suggestion gets the same loss lists (the
    same objects), so the split is computed once per suggestion."""
    if _split_order[0] is not l_idxs or _split_order[1] is not l_vals:
        _split_order[:] = [l_idxs, l_vals, (np.asarray(l_idxs), np.asarray(l_vals, dtype=float), {})]
    l_idxs, losses, splits = _split_order[2]
    n_below = min(int(np.ceil(gamma * np.sqrt(len(losses)))), gamma_cap)
    if n_below not in splits:  # one per suggestion: every hyperparameter has the same gamma
        splits[n_below] = good_trials(losses, n_below)
    good = splits[n_below]
    o_idxs, o_vals = np.asarray(o_idxs), np.asarray(o_vals)
    below = o_vals[np.isin(o_idxs, l_idxs[good])] if len(o_idxs) else o_vals[:0]
    above = o_vals[np.isin(o_idxs, l_idxs[~good])] if len(o_idxs) else o_vals[:0]
    # hyperopt builds them from Python lists: an empty one comes back as float64
    return (below if len(below) else np.asarray([])), (above if len(above) else np.asarray([]))


class _Column:
    """A list kept also as the array ``np.asarray(list)`` makes of it, grown by the part appended since:
    the only reader of the observations is ``ap_split_trials``, which makes arrays of them."""

    def __init__(self):
        self.items, self._array = [], None

    def extend(self, values):
        self.items.extend(values)

    def __setitem__(self, i, value):
        self.items[i] = value
        if self._array is not None and i < len(self._array):
            self._array[i] = value

    def __len__(self):
        return len(self.items)

    def array(self) -> np.ndarray:
        a = self._array
        if a is None or not len(a):  # an empty list's array is float64 whatever comes later
            a = np.asarray(self.items)
        elif len(a) < len(self.items):  # promotes as np.asarray of the whole list would
            a = np.concatenate([a, np.asarray(self.items[len(a):])])
        self._array = a
        return a


class _History:
    """What tpe.suggest collects from the records, kept between calls: ids, losses, observed values."""

    def __init__(self, keys):
        self.keys, self.docs, self.pending = keys, [], []
        self.tids, self.losses = _Column(), _Column()
        self.idxs, self.vals = {k: _Column() for k in keys}, {k: _Column() for k in keys}

    def extends(self, docs, keys) -> bool:
        n = len(self.docs)
        return keys == self.keys and len(docs) >= n and (n == 0 or docs[n - 1] is self.docs[-1])

    def add(self, docs) -> bool:
        """Append the records after those seen; False where tpe.suggest's order would differ."""
        new = docs[len(self.docs):]
        ordered = self.docs[-1:] + new
        if any("from_tid" in d["misc"] for d in new) or any(a["tid"] >= b["tid"] for a, b in zip(ordered, ordered[1:])):
            return False
        losses = [doc["result"].get("loss") for doc in new]
        self.pending += [len(self.docs) + i for i, loss in enumerate(losses) if loss is None]
        self.docs += new
        self.tids.extend(doc["tid"] for doc in new)
        self.losses.extend(float("inf") if loss is None else float(loss) for loss in losses)
        idxs, vals = tpe.miscs_to_idxs_vals([d["misc"] for d in new], keys=self.keys)
        for k in self.keys:
            self.idxs[k].extend(idxs[k])
            self.vals[k].extend(vals[k])
        still = []
        for i in self.pending:  # the trials running when last seen: a loss arrives once, when they end
            loss = self.docs[i]["result"].get("loss")
            if loss is None:
                still.append(i)
            else:
                self.losses[i] = float(loss)
        self.pending = still
        return True


class IncrementalSuggest:
    """``tpe.suggest`` (or a ``functools.partial`` of it, as Ray's HyperOptSearch holds it) for one
    searcher: the same return value, from a history kept between calls."""

    def __init__(self, algo):
        self.algo = algo
        self.kwargs = dict(algo.keywords) if isinstance(algo, functools.partial) else {}
        self.history: _History | None = None
        functools.update_wrapper(self, algo)

    def __call__(self, new_ids, domain, trials, seed):
        keys = list(domain.params.keys())
        docs = trials.trials
        if self.history is None or not self.history.extends(docs, keys):
            self.history = _History(keys)
        if not self.history.add(docs):
            self.history = None
            return self._hyperopt(new_ids, domain, trials, seed)
        return self._suggest(new_ids, domain, trials, seed, **self.kwargs)

    def _hyperopt(self, new_ids, domain, trials, seed):
        """hyperopt's own suggest, with only the vectorized split swapped in (pyll looks it up by name)."""
        with _our_split():
            return self.algo(new_ids, domain, trials, seed)

    def _suggest(self, new_ids, domain, trials, seed, prior_weight=tpe._default_prior_weight,
                 n_startup_jobs=tpe._default_n_startup_jobs, n_EI_candidates=tpe._default_n_EI_candidates,
                 gamma=tpe._default_gamma, verbose=True):
        # tpe.suggest from "Sample and compute log-probability" on (the same in hyperopt 0.2.7 and 0.3.0), fed from the history;
        # tests/test_tpe_cache.py compares the two with the hyperopt installed
        h = self.history
        if len(h.tids) < n_startup_jobs:
            return rand.suggest(new_ids, domain, trials, seed)
        observed, observed_loss, posterior = _posterior(domain, prior_weight, gamma)
        first_new_id = new_ids[0]
        fake_id_0 = (max(h.tids.items[-1], first_new_id) if len(h.tids) else first_new_id) + 2
        fake_ids = list(range(fake_id_0, fake_id_0 + n_EI_candidates))
        # arrays where hyperopt passes lists: their one reader, our ap_split_trials, makes these arrays of them
        memo = {domain.s_new_ids: fake_ids, domain.s_rng: np.random.default_rng(seed),
                observed_loss["idxs"]: h.tids.array(), observed_loss["vals"]: h.losses.array(),
                observed["idxs"]: {k: v.array() for k, v in h.idxs.items()},
                observed["vals"]: {k: v.array() for k, v in h.vals.items()}}
        with _our_split():
            idxs, vals = pyll.rec_eval(posterior, memo=memo, print_node_on_error=False)
        for label, param in domain.params.items():  # hyperopt's offset for randint(low, high)
            if param.name == "randint" and len(param.pos_args) == 2:
                offset = param.pos_args[0].obj
                vals[label] = [val + offset for val in vals[label]]
        miscs = [{"tid": first_new_id, "cmd": domain.cmd, "workdir": domain.workdir}]
        base.miscs_update_idxs_vals(miscs, idxs, vals, idxs_map={fake_ids[0]: first_new_id},
                                    assert_all_vals_used=False)
        return trials.new_trial_docs([first_new_id], [None], [domain.new_result()], miscs)


class IncrementalTrials(base.Trials):
    """hyperopt's in-memory Trials whose refresh appends the records inserted since the last one,
    and which indexes its valid records by trial id. A record leaves the valid list only when its
    trial errors; ``rebuild()`` asks for the full pass then."""

    @classmethod
    def adopt(cls, trials: base.Trials) -> "IncrementalTrials":
        trials.__class__ = cls  # the same records and state; the next refresh is a full one
        trials.rebuild()
        trials._index_all()
        return trials

    def refresh(self):
        seen = getattr(self, "_refreshed", None)
        if seen is None or seen > len(self._dynamic_trials) or self._exp_key is not None:  # e.g. delete_all()
            super().refresh()
            self._index_all()
        else:
            new = [tt for tt in self._dynamic_trials[seen:] if tt["state"] in base.JOB_VALID_STATES]
            self._trials = self._trials + new  # a new list, as hyperopt's: a caller may hold the old one
            self._ids.update(tt["tid"] for tt in new)
            for tt in new:
                self._by_tid.setdefault(tt["tid"], tt)
        self._refreshed = len(self._dynamic_trials)

    def rebuild(self):
        self._refreshed = None

    def _index_all(self):
        self._by_tid = {}
        for tt in self._trials:
            self._by_tid.setdefault(tt["tid"], tt)  # the first of equal tids wins, as in Ray's lookup

    def record(self, tid):
        """The valid record with this trial id, as Ray's lookup finds it in ``trials``; None if none."""
        return self._by_tid.get(tid)


def lookup_searcher_class():
    """Ray's HyperOptSearch with its per-result record lookup indexed by trial id and hyperopt's
    trial list refreshed incrementally (Ray imported only when a HyperOpt searcher is made)."""
    from ray.tune.search.hyperopt import HyperOptSearch

    class LookupHyperOptSearch(HyperOptSearch):
        def _setup_hyperopt(self):
            super()._setup_hyperopt()
            IncrementalTrials.adopt(self._hpopt_trials)

        def on_trial_complete(self, trial_id, result=None, error=False):
            if error and isinstance(self._hpopt_trials, IncrementalTrials):
                self._hpopt_trials.rebuild()  # hyperopt drops an errored trial's record from its list
            super().on_trial_complete(trial_id, result, error)

        def _get_hyperopt_trial(self, trial_id):
            if trial_id not in self._live_trial_mapping:
                return None
            if not isinstance(self._hpopt_trials, IncrementalTrials):  # restored from an older checkpoint
                IncrementalTrials.adopt(self._hpopt_trials)
            record = self._hpopt_trials.record(self._live_trial_mapping[trial_id][0])
            if record is None:
                raise IndexError("list index out of range")  # what Ray's [...][0] raises
            return record

    return LookupHyperOptSearch
