"""A Ray Tune ``Searcher`` on bayesian-optimization 3.x (the ``bayes_opt`` package).

Why our own: Ray's ``BayesOptSearch`` calls ``UtilityFunction``, which bayesian-optimization
2.0 removed (ray issue 49845), and it accepts float parameters only.

How the search space is mapped to bayes_opt's typed parameters: ``searchers/bo_space.py``.

Behaviour a user should know (the model itself: ``searchers/gp.py``):

* The first ``n_initial_points`` suggestions are uniform random (seeded); then the GP with log
  expected improvement takes over.
* In a finite space of up to ``MAX_ENUMERATED`` configurations (every grid of this project)
  the next suggestion is the exact argmax over all untried configurations; elsewhere the best
  untried candidate of ``gp.ranked_candidates`` (the next best when the best was tried). No
  configuration is suggested twice (``allow_duplicates=False``, as in Syne Tune); once every
  one has been tried the searcher returns ``FINISHED``.
* Concurrent trials: each running trial is believed to score the GP's mean there (a kriging
  believer); ``pending="worst"`` is the constant liar (Ginsbourger et al. 2010) it replaced.
* What a trial is worth: the best value of ``metric`` it reported (over all its epochs), the
  same score that selects a method's configuration. A trial that ASHA stopped early is
  registered with the best value it reached before the stop: a lower-fidelity, usually
  pessimistic, observation. That is deliberate: ASHA stopped it because it ranked below its
  peers at that rung, and the pessimism steers the GP away from it; it is never dropped.
* ``mode="min"`` is handled by negating the metric (bayes_opt maximizes).
* A trial that errored, or whose metric is NaN or inf, is registered with the worst finite
  target observed so far (deferred until there is one), so the GP learns to avoid it.
* ``save``/``restore`` pickle the whole searcher state, pending trials included.
"""

from __future__ import annotations

import itertools
import math
import pickle
import warnings
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils.util import flatten_dict, unflatten_dict

from searchers.bo_space import Param, convert_domain

_Param = Param  # the name a searcher pickled before the mapping moved to bo_space.py (a run to --resume) looks up

try:  # bayesian-optimization >= 3
    import bayes_opt

    from searchers import gp
except ImportError:  # pragma: no cover - exercised only without the package
    bayes_opt = None


# What a running trial is assumed to score while the next is suggested: the GP's mean there (a
# kriging believer, the default) or the worst score seen (a constant liar; kept for the benchmark).
PENDING = ("believer", "worst")
# Finite spaces up to this many configurations are searched exactly (every untried one scored).
MAX_ENUMERATED = 50_000


class BayesOptSearcher(Searcher):
    """Gaussian-process Bayesian optimization (bayes_opt 3.x) behind Ray's ``Searcher`` API."""

    def __init__(self, space: dict | None = None, metric: str | None = None, mode: str | None = None,
                 points_to_evaluate: list[dict] | None = None, random_state: int | None = 42,
                 n_initial_points: int = 5, allow_duplicates: bool = False, pending: str = "believer"):
        if bayes_opt is None:
            raise ImportError("bayesian-optimization 3.x must be installed: pip install 'bayesian-optimization>=3'")
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if pending not in PENDING:
            raise ValueError(f"pending must be one of {', '.join(PENDING)}, got {pending!r}")
        if n_initial_points < 1:
            raise ValueError(f"n_initial_points must be at least 1, got {n_initial_points}")
        super().__init__(metric=metric, mode=mode)
        self._random_state = random_state
        self._n_initial_points = n_initial_points
        self._allow_duplicates = allow_duplicates
        self._pending = pending
        self._points_to_evaluate = [dict(p) for p in points_to_evaluate or []]
        self._params: list[Param] = []
        self._constants: dict[str, Any] = {}
        self._pbounds: dict | None = None
        self._observations: list[tuple[dict, float]] = []  # (bayes_opt params, target) of finished trials
        self._rng = np.random.RandomState(random_state)
        self._live: dict[str, dict] = {}  # trial_id -> bayes_opt params of a running trial
        # Ids of live trials a pausing scheduler holds at a rung (set by searchers.pausing before each
        # suggestion): they train nothing now, so they are not pending points of the GP
        self.paused: set = set()
        self._best: dict[str, float] = {}  # trial_id -> best target reported so far
        self._tried: set[tuple] = set()  # configurations suggested (finished or running)
        self._deferred_failures: list[dict] = []  # failed before any finite target existed
        self._n_finished = 0
        self._model: gp.Model | None = None  # built with the space; keeps the kernel fit between suggestions
        self._enumerated: tuple | None = None  # a finite space's configurations, arrays, which are untried
        self._target_space = None  # see _space()
        if space:
            self._setup_space(space)

    # --- Ray's Searcher API -------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._pbounds is not None:
            return False
        if mode is not None and mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        self._setup_space(config)
        return True

    def suggest(self, trial_id: str):
        if self._pbounds is None:
            raise RuntimeError("BayesOptSearcher has no search space: pass `space` or use it through tune.Tuner")
        if self._metric is None or self._mode is None:
            raise RuntimeError("BayesOptSearcher needs `metric` and `mode` (pass them or set them in TuneConfig)")
        point = None
        if self._points_to_evaluate:
            point = self._points_to_evaluate.pop(0)  # one starting point per suggestion
            params = {p.name: p.encode(point[p.name]) for p in self._params}
        else:
            observed, pending = self._training_data()
            if len(self._tried) < self._n_initial_points or not observed:
                params = self._random_untried()
            else:
                params = self._model_suggestion(observed, pending)
        if params is None:
            return Searcher.FINISHED
        self._live[trial_id] = params
        self._tried.add(self._key(params))
        config = self._to_config(params)
        if point is not None:  # as given: the encode/decode round trip (a log scale) can change the last digit
            config.update({p.name: point[p.name] for p in self._params})
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._observe(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        params = self._live.pop(trial_id, None)
        if params is None:
            return
        if not error:
            self._observe(trial_id, result)
        target = None if error else self._best.get(trial_id)
        self._best.pop(trial_id, None)
        self._n_finished += 1
        if target is None or not math.isfinite(target):
            self._register_failure(params)
        else:
            self._register(params, target)
            for failed in self._deferred_failures:  # now there is a worst target to give them
                self._register(failed, self._worst_target())
            self._deferred_failures.clear()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    # --- the encoding, for others that model configurations (searchers.next_rung) ------------
    @property
    def searched(self) -> list[str]:
        """The searched hyperparameters' names (a choice of one value is a constant, not searched)."""
        return [p.name for p in self._params]

    def target_space(self):
        """bayes_opt's TargetSpace of the searched hyperparameters: what the GP's inputs are."""
        return self._space()

    def arrays(self, configs: list[dict]) -> np.ndarray:
        """Ray configurations as the GP's input rows, encoded as suggestions are decoded."""
        flat = [flatten_dict(config, delimiter="/") for config in configs]
        return gp.to_arrays(self._space(), [{p.name: p.encode(f[p.name]) for p in self._params} for f in flat])

    # --- internals ----------------------------------------------------------------------
    def _setup_space(self, config: dict) -> None:
        resolved, domains, grids = parse_spec_vars(config)
        if grids:
            raise ValueError("bayesopt cannot take tune.grid_search; use tune.choice over the same values")
        params = []
        for path, domain in domains:
            if any("/" in str(p) for p in path):  # "/" joins nested keys: such a name would come back nested
                raise ValueError(f"bayesopt cannot search {'/'.join(map(str, path))!r}: a parameter name may not "
                                 "contain '/' (nest it as a dict instead)")
            name = "/".join(str(p) for p in path)
            if isinstance(domain, Categorical) and len(domain.categories) == 1:
                self._constants[name] = domain.categories[0]
                continue
            params.append(convert_domain(name, domain))
        self._params = params
        self._pbounds = {p.name: p.bounds for p in params}

    def _space(self):
        """bayes_opt's TargetSpace of the searched parameters, built once (not per suggestion)."""
        if self._target_space is None:
            with warnings.catch_warnings():
                # bayes_opt calls its integer and categorical parameters experimental; they are the point here.
                warnings.filterwarnings("ignore", message="Non-float parameters are experimental")
                self._target_space = bayes_opt.BayesianOptimization(
                    f=None, pbounds=self._pbounds, random_state=self._rng, verbose=0,
                    allow_duplicate_points=True).space
        return self._target_space

    def _training_data(self) -> tuple[list[tuple[dict, float]], list[dict]]:
        """What the GP is fitted to: (params, target) of the finished trials, and the params of the
        running ones (pending; a paused trial is not running). A subclass may answer from other
        observations (searchers.rungbo)."""
        return self._observations, [p for t, p in self._live.items() if t not in self.paused]

    def _model_suggestion(self, observed: list[tuple[dict, float]], pending: list[dict]) -> dict | None:
        """The untried configuration of highest log-EI given ``observed``, with every ``pending``
        configuration believed to score the GP's mean there (a kriging believer)."""
        space = self._space()
        X = gp.to_arrays(space, [p for p, _ in observed])
        y = gp.warp(np.array([t for _, t in observed]))
        if self._model is None:
            self._model = gp.Model(space, self._rng)
        n_seen = len(y)
        X, y = gp.subset_of_data(X, y, self._rng)
        model = self._model.fit(X, y, n_seen)
        if pending:
            pending = gp.to_arrays(space, pending)
            believed = model.predict(pending) if self._pending == "believer" else np.full(len(pending), y.min())
            model = model.condition(pending, believed)
        score = gp.acquisition(model, y_max=float(y.max()))
        if self._space_size() <= MAX_ENUMERATED:  # a finite space (the grids): the exact argmax over every untried one
            candidates, arrays = self._untried()
            if not candidates:
                return None
            values = score(arrays)
            best = np.flatnonzero(values >= values.max() - 1e-12)
            return candidates[int(self._rng.choice(best))]
        # the next best candidate when the best was tried
        for x in gp.ranked_candidates(score, space, self._rng, incumbent=X[int(np.argmax(y))]):
            params = space.array_to_params(x)
            if self._allow_duplicates or self._key(params) not in self._tried:
                return params
        return self._random_untried()

    def _untried(self) -> tuple[list[dict], np.ndarray]:
        """Every configuration of a finite space not tried yet: bayes_opt params and their arrays."""
        if self._enumerated is None:  # listed once: rebuilding 2,000 dicts a suggestion cost more than the GP
            axes = []
            for p in self._params:
                if p.kind == "categorical":
                    axes.append([str(v) for v in p.values])
                else:  # ordinal or int: the integers between the bounds
                    axes.append(list(range(int(p.bounds[0]), int(p.bounds[1]) + 1)))
            names = [p.name for p in self._params]
            candidates = [dict(zip(names, combo)) for combo in itertools.product(*axes)]
            space = self._space()
            index = {self._key(c): i for i, c in enumerate(candidates)}
            # which are untried, updated from the keys tried since (a set difference, not a scan of
            # every candidate per suggestion: that was 8% of an LCBench ASHA replay)
            self._enumerated = (candidates, gp.to_arrays(space, candidates), index, np.ones(len(candidates), bool), set())
        candidates, arrays, index, untried, marked = self._enumerated
        if not self._allow_duplicates:
            for key in self._tried - marked:
                if key in index:
                    untried[index[key]] = False
                marked.add(key)
        keep = np.flatnonzero(untried)
        return [candidates[i] for i in keep], arrays[keep]

    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def _observe(self, trial_id: str, result: dict | None) -> None:
        if not result or self._metric not in result:
            return
        value = result[self._metric]
        try:
            target = self._sign * float(value)
        except (TypeError, ValueError):
            return
        if not math.isfinite(target):
            self._best[trial_id] = math.nan  # a NaN/inf report marks the trial as failed
            return
        previous = self._best.get(trial_id)
        if previous is None or (math.isfinite(previous) and target > previous):
            self._best[trial_id] = target

    def _key(self, params: dict) -> tuple:
        return tuple(repr(p.decode(params[p.name])) for p in self._params)

    def _to_config(self, params: dict) -> dict:
        flat = {p.name: p.decode(params[p.name]) for p in self._params}
        flat.update(self._constants)
        return unflatten_dict(flat, delimiter="/")

    def _space_size(self) -> float:
        size = 1
        for p in self._params:
            if p.kind == "ordinal":
                size *= len(p.values)
            elif p.kind == "categorical":
                size *= len(p.values)
            elif p.kind == "int":
                size *= p.bounds[1] - p.bounds[0] + 1
            else:
                return math.inf
        return size

    def _random_untried(self) -> dict | None:
        """A uniformly random configuration not tried yet (None when the space is exhausted)."""
        space = self._space()
        size = self._space_size()
        if size < math.inf and len(self._tried) >= size:
            return None
        for _ in range(1000):
            params = space.array_to_params(space.random_sample(random_state=self._rng))
            if self._allow_duplicates or size == math.inf or self._key(params) not in self._tried:
                return params
        # A nearly exhausted finite space: rejection sampling keeps missing the few untried
        # configurations, so draw uniformly among them; a space too large to list cannot be
        # nearly exhausted by any real budget, and sampling on finds one (one exists: see above).
        if size <= MAX_ENUMERATED:
            untried, _ = self._untried()
            return untried[int(self._rng.randint(len(untried)))]
        while True:
            params = space.array_to_params(space.random_sample(random_state=self._rng))
            if self._key(params) not in self._tried:
                return params

    def _register(self, params: dict, target: float) -> None:
        self._observations.append((params, float(target)))

    def _worst_target(self) -> float:
        return min(target for _, target in self._observations)

    def _register_failure(self, params: dict) -> None:
        if self._observations:
            self._register(params, self._worst_target())
        else:
            self._deferred_failures.append(params)
