"""Freeze-thaw (Swersky et al. 2014) with DPL's learning-curve model (Kadra et al. 2023): method
``dpl:freeze_thaw``. Every started trial stays pausable; whenever a worker is free, one model of
learning curves across configurations chooses the next action among "train paused trial i one more
step" and "start configuration x", by expected improvement at each configuration's own final epoch
(DPL's acquisition). The step is one epoch (``decision_epochs=None``) or up to the next rung.

How it sits in Ray Tune: the scheduler (``FreezeThaw``) owns the model and every decision; the
searcher (``FreezeThawSearcher``) asks it for the next new configuration (the best untried one of
the task's grid by the same acquisition, never one twice; the first ``n_initial`` in a seeded random
order, DPL's initial design). At each decision epoch a trial's result either continues it (it is the
best action with its worker free) or pauses it (Tune saves its training state, as for promotion
ASHA); ``choose_trial_to_run`` then resumes the best paused trial or starts the waiting new one,
whichever scores higher. The replay drives the same objects (experiments.replay.simulator).

Left alone, every started trial is trained to its own epoch count in the end (as promotion's
anytime does): the method is for runs bounded by a time budget (``--time-budget``, the replay's
compute budget), where it decides what the budget is spent on.

Survives ``--resume``: ``snapshot`` keeps the observations, the paused trials and the untried
configurations (not the network: it is refitted from the observations at the next decision).
"""

from __future__ import annotations

import math
import random

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from searchers.bo_space import convert_domain
from searchers.power_law import PowerLawEnsemble, log_expected_improvement  # torch only once a model is made

# The model is refitted once the observed epochs have grown by this share since its last fit (and
# at every new observation while there are few): its cost stays a few hundred fits however long a run.
REFIT_GROWTH = 0.05
MAX_CANDIDATES = 20_000  # a grid larger than this is scored on a seeded sample of its untried configurations


def encode(space: dict, configs: list[dict]) -> np.ndarray:
    """Configurations as model inputs in [0, 1]: a numeric choice's position among its sorted values
    (bo_space's ordinal, the log scale of a geometric grid), a categorical one-hot; constants dropped."""
    columns = []
    for name, domain in space.items():
        if not hasattr(domain, "categories") or len(domain.categories) < 2:
            continue
        param = convert_domain(name, domain)
        if param.kind == "ordinal":
            columns.append(np.array([param.encode(c[name]) for c in configs], dtype=float) / (len(param.values) - 1))
        else:
            labels = [str(c[name]) for c in configs]
            columns += [np.array([label == v for label in labels], dtype=float) for v in param.bounds]
    return np.stack(columns, axis=1) if columns else np.zeros((len(configs), 1))


class FreezeThaw(FIFOScheduler):
    def __init__(self, time_attr: str, max_t: int, space: dict, configurations: list[dict], epochs_param: str,
                 seed: int = 0, n_initial: int = 10, metric: str | None = None, mode: str | None = None,
                 decision_epochs=None, pause_disk_bytes: float | None = None, state_bytes=None, anchor: bool = False):
        super().__init__()
        self._time_attr, self._max_t, self._metric, self._mode = time_attr, max_t, metric, mode
        self._names = [n for n in space]
        self._configs = configurations
        self._index = {self._key(c): i for i, c in enumerate(configurations)}
        self._features = encode(space, configurations)
        self._final = np.array([float(c[epochs_param]) for c in configurations]) / max_t  # each one's own last epoch
        self._order = list(range(len(configurations)))
        random.Random(seed).shuffle(self._order)  # the initial design, and the candidates of a huge grid
        self._n_initial = max(1, min(n_initial, len(configurations)))
        self._seed = seed
        self._decision_epochs = None if decision_epochs is None else set(decision_epochs)
        self._untried = np.ones(len(configurations), dtype=bool)
        self._trial_index: dict[str, int] = {}  # trial id -> its configuration's index in the grid
        self._trials: dict[str, Trial] = {}  # every trial added (Tune's objects; not in the snapshot)
        self._waiting: dict[str, Trial] = {}  # trials added and not started yet: the PENDING among them wait
        self._paused: dict[str, int] = {}  # trial id -> the epoch it paused after
        self._obs: list[tuple[int, float, float]] = []  # (configuration index, budget, loss): every observed epoch
        # configuration index -> (budget, loss) last observed: its keys are the configurations observed
        self._last_seen: dict[int, tuple[float, float]] = {}
        self._anchor = anchor
        self._stale: set[int] = set()  # configurations observed since their score was computed
        self._laws = None  # each member's power law per configuration, from the last fit
        self._best_loss = math.inf
        self._search_open = True  # whether the searcher may still suggest (False once it said FINISHED)
        self._pause_disk_bytes = pause_disk_bytes
        self._state_bytes = state_bytes
        self._sizes: dict[str, float] = {}
        self.evicted: list[str] = []
        self._model = None
        self._fitted_at = 0
        self._predicted = None  # (members, grid) losses at each configuration's last epoch, from the last fit
        self._ei = None  # expected improvement per configuration, for the current fit and incumbent
        self.fit_steps: list[tuple[int, int]] = []  # (observations, minibatch steps) per fit: the cost

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _key(self, config: dict) -> tuple:
        return tuple(config.get(n) for n in self._names)

    # --- the model ----------------------------------------------------------------------------
    def _observe(self, trial_id: str, epoch: int, value) -> None:
        if value is None or not math.isfinite(float(value)):
            return
        loss = -float(value) if self._mode == "max" else float(value)
        index = self._trial_index[trial_id]
        self._obs.append((index, epoch / self._max_t, loss))
        self._last_seen[index] = (epoch / self._max_t, loss)
        self._stale.add(index)
        if loss < self._best_loss:
            self._best_loss, self._ei = loss, None

    def scores(self) -> np.ndarray | None:
        """log expected improvement of every grid configuration at its last epoch; None during the initial design."""
        n = len(self._obs)
        if self._model is None:
            if len(self._last_seen) < self._n_initial:
                return None
            self._model = PowerLawEnsemble(self._features.shape[1], seed=self._seed)
        if self._predicted is None or n - self._fitted_at >= max(1, math.ceil(REFIT_GROWTH * self._fitted_at)):
            index, budget, loss = (np.array(column) for column in zip(*self._obs))
            self.fit_steps.append((n, self._model.fit(self._features[index.astype(int)], budget, loss)))
            self._fitted_at = n
            self._laws = self._model.curve_params(self._features)
            self._predicted = self._model.loss_at(self._laws, self._final)
            self._ei = None
        if self._ei is None:
            final = self._predicted
            if self._anchor and self._last_seen:
                observed = list(self._last_seen)
                final = final.copy()
                final[:, observed] = self._anchored(observed)
            self._ei = log_expected_improvement(final, self._best_loss)
            self._stale.clear()
        elif self._anchor and self._stale:
            changed = sorted(self._stale)
            self._ei[changed] = log_expected_improvement(self._anchored(changed), self._best_loss)
            self._stale.clear()
        return self._ei

    def _anchored(self, observed: list[int]) -> np.ndarray:
        """(members, len(observed)): the ``anchor`` variant's predicted final losses of observed configurations:
        each one's last observed loss plus the improvement its law predicts from there to its last epoch (the
        model's own prediction for a configuration ignores where its curve actually is)."""
        index = np.asarray(observed)
        budget, loss = (np.array(c) for c in zip(*(self._last_seen[i] for i in observed)))
        laws = tuple(p[:, index] for p in self._laws)
        return loss + self._model.loss_at(laws, self._final[index]) - self._model.loss_at(laws, budget)

    def suggest(self) -> dict | None:
        """The next new configuration (the searcher's): the initial design in its seeded order, then the
        untried one of highest expected improvement. None once every configuration was tried."""
        if not self._untried.any():
            self._search_open = False
            return None
        scores = self.scores() if len(self._last_seen) >= self._n_initial else None
        if scores is None:
            index = next(i for i in self._order if self._untried[i])
        else:
            candidates = np.flatnonzero(self._untried)
            if len(candidates) > MAX_CANDIDATES:
                candidates = np.array([i for i in self._order if self._untried[i]][:MAX_CANDIDATES])
            index = int(candidates[np.argmax(scores[candidates])])
        self._untried[index] = False
        return dict(self._configs[index])

    # --- Tune's scheduler interface ---------------------------------------------------------
    def on_trial_add(self, tune_controller, trial: Trial):
        self._trials[trial.trial_id] = trial
        self._trial_index[trial.trial_id] = self._index[self._key(trial.config)]
        self._untried[self._trial_index[trial.trial_id]] = False
        if trial.status in (Trial.TERMINATED, Trial.ERROR):  # restored as ended: a candidate no more
            self.on_trial_remove(tune_controller, trial)
            return
        if trial.trial_id in self._paused:
            if trial.status == Trial.PENDING:  # Tuner.restore re-queues a paused trial as PENDING
                trial.set_status(Trial.PAUSED)
            return
        # a new trial, or one restored after a kill while it trained (PENDING again, from its last state):
        # either waits to be chosen by choose_trial_to_run
        self._waiting[trial.trial_id] = trial

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._waiting.pop(trial.trial_id, None)
        epoch = result.get(self._time_attr)
        if epoch is None or result.get(self._metric) is None:
            return TrialScheduler.CONTINUE
        self._observe(trial.trial_id, int(epoch), result[self._metric])
        own_last = self._final[self._trial_index[trial.trial_id]] * self._max_t
        if epoch >= own_last or (self._decision_epochs is not None and epoch not in self._decision_epochs):
            return TrialScheduler.CONTINUE
        scores = self.scores()
        if scores is None:  # the initial design: every configuration of it gets its first step first
            self._paused[trial.trial_id] = int(epoch)
            return TrialScheduler.PAUSE
        mine = scores[self._trial_index[trial.trial_id]]
        if mine >= self._best_other(scores):
            return TrialScheduler.CONTINUE  # its worker is free and it is the best use of it: no save and restore
        self._paused[trial.trial_id] = int(epoch)
        return TrialScheduler.PAUSE

    def _best_other(self, scores: np.ndarray) -> float:
        """The best score of another action: a paused trial, a waiting new trial, an untried configuration."""
        waiting = [self._trial_index[t] for t, trial in self._waiting.items() if trial.status == Trial.PENDING]
        others = self._untried if self._search_open else np.zeros_like(self._untried)
        others = others.copy()
        others[[self._trial_index[t] for t in self._paused] + waiting] = True
        return float(scores[others].max()) if others.any() else -math.inf

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        if self._pause_disk_bytes is not None and self._paused:
            self._evict(tune_controller)
        pending = [t for t in self._waiting.values() if t.status == Trial.PENDING]
        search = getattr(tune_controller, "search_alg", None)
        if search is not None and search.is_finished():
            self._search_open = False
        if not self._paused:
            return pending[0] if pending else None
        scores = self.scores()
        if scores is None:  # the initial design: new configurations first, then the paused in arrival order
            if pending or self._search_open:
                return pending[0] if pending else None
            return self._resume(next(iter(self._paused)))
        best_paused = max(self._paused, key=lambda t: scores[self._trial_index[t]])
        if pending:
            best_new = max(pending, key=lambda t: scores[self._trial_index[t.trial_id]])
            if scores[self._trial_index[best_new.trial_id]] > scores[self._trial_index[best_paused]]:
                return best_new
        return self._resume(best_paused)

    def _resume(self, trial_id: str) -> Trial | None:
        """The paused trial to run now; None while Tune is still pausing it (saving its state, its status
        RUNNING): Tune asks again at its next step (as searchers/promotion.py's _resume)."""
        trial = self._trials[trial_id]
        if trial.status != Trial.PAUSED:
            return None
        self._paused.pop(trial_id)
        self._sizes.pop(trial_id, None)
        return trial

    def _evict(self, tune_controller) -> None:
        """Stop the lowest-scoring paused trials for good while their saved states take more than the budget."""
        from searchers.pausing import evictions
        from searchers.promotion import checkpoint_bytes

        sizer = self._state_bytes or checkpoint_bytes
        for trial_id in self._paused:
            if trial_id not in self._sizes:
                size = sizer(self._trials[trial_id])
                if size is not None:
                    self._sizes[trial_id] = float(size)
        scores = self.scores()
        rank = (lambda t: scores[self._trial_index[t]]) if scores is not None else (lambda t: 0.0)
        by_score = sorted((t for t in self._paused if t in self._sizes), key=rank, reverse=True)
        for victim in evictions(by_score, self._sizes, self._pause_disk_bytes):
            self.evicted.append(victim)
            self._forget(victim)
            tune_controller.stop_trial(self._trials[victim])

    def _forget(self, trial_id: str) -> None:
        self._paused.pop(trial_id, None)
        self._waiting.pop(trial_id, None)
        self._sizes.pop(trial_id, None)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._forget(trial.trial_id)
        self._trials.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial):
        self.on_trial_remove(tune_controller, trial)

    def paused_ids(self) -> set[str]:
        """The trials paused now (the searchers' concurrency limit leaves them out: searchers.pausing)."""
        return set(self._paused)

    def debug_string(self) -> str:
        return (f"FreezeThaw: {len(self._last_seen)} configurations observed, {len(self._obs)} epochs, "
                f"{len(self._paused)} paused")

    # --- --resume (experiments.callbacks.SchedulerState) ----------------------------------------
    # Left out of the snapshot, and their values after a restore: the network and what it predicted (refitted
    # from the observations at the next decision), and Tune's trial objects (added again on resume).
    @staticmethod
    def _rebuilt() -> dict:
        return {"_model": None, "_predicted": None, "_laws": None, "_ei": None, "_fitted_at": 0, "_waiting": {},
                "_trials": {}}

    def snapshot(self) -> dict:
        """What Tune's experiment snapshot keeps: everything but ``_rebuilt``'s."""
        return {k: v for k, v in self.__dict__.items() if k not in self._rebuilt()}

    def restore_snapshot(self, state: dict) -> None:
        self.__dict__.update(state, **self._rebuilt())


class FreezeThawSearcher(Searcher):
    """Tune's searcher side of freeze-thaw: the new configurations, chosen by the scheduler's model."""

    def __init__(self, scheduler: FreezeThaw, metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self._scheduler = scheduler

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def suggest(self, trial_id: str):
        config = self._scheduler.suggest()
        return Searcher.FINISHED if config is None else config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the scheduler saw every result

    # The state is the scheduler's (saved by experiments.callbacks.SchedulerState); Tune still asks.
    def save(self, checkpoint_path: str) -> None:
        open(checkpoint_path, "wb").close()

    def restore(self, checkpoint_path: str) -> None:
        pass
