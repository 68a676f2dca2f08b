"""Promotion-type ASHA (Li et al. 2020, Algorithm 2; Syne Tune's ``type="promotion"``) as a Ray Tune
``TrialScheduler``: trials pause at each rung and continue only when they rank in the top
1/reduction_factor of the trials recorded there.

Ray's own ``ASHAScheduler`` stops and never pauses (ray issues 4401, 32634, 44256): a trial above
its rung's cutoff runs on, and with one worker a rung with no cutoff yet (too few trials) lets the
first trial run to the end. Here no trial trains past a rung on a comparison made with too few
peers; compute goes to the configurations that earned it.

Rungs are ``grace_period * reduction_factor**k`` epochs below ``max_t`` (Ray's ASHA's rungs). At a
rung, a trial is recorded; if it is in the top ``floor(n / reduction_factor)`` of the ``n`` trials
recorded there, it continues at once (the same as pausing it and promoting it at once, without
the save and restore); otherwise it pauses (its worker is freed; Tune saves it and restores it
from that checkpoint when it resumes). When a worker is free, ``choose_trial_to_run`` resumes the
best promotable paused trial, highest rung first, before a new trial starts. Once nothing runs and
nothing waits to start (the searcher has no more configurations), the paused trials that never
qualified are stopped for good.

``anytime`` (scheduler ``promotion_anytime``): once the search algorithm is finished (a finite grid
tried in full, or its num_samples drawn) and no trial waits to start, a free worker resumes the
paused trial that ranks best at its rung (the smallest share of strictly better trials there; at a
tie the rung with more epochs, then the earlier arrival: the eviction order below, reversed)
instead of leaving the worker idle. On a finite grid promotion ASHA otherwise ends at successive
halving's compute (LCBench: every configuration tried at ~12% of the grid's compute) with the rest
of a budget unspent; anytime spends it on the trials that came closest to a promotion, and given
time trains every trial to max_t. So it is for runs bounded by time (Ctrl-C, a time budget, the
replay's compute budget), not by num_samples: a run left alone costs what FIFO costs.

``rule="quantile"`` (schedulers ``promotion_quantile``, ``promotion_quantile_anytime``): Syne Tune 0.13's
promotion test instead of Li et al.'s count (``hyperband_promotion.py``, ``Rung.quantile``): a trial may
go on once at least two are recorded at its rung and its value is at or above their (1 - 1/eta)
quantile, linearly interpolated as ``numpy.quantile`` does. It lets a few more through (the best of two,
about ceil(n/eta) of n rather than floor(n/eta)), so the next rungs fill sooner.

``choice="curve"`` (schedulers ``promotion_curve``, ``promotion_curve_anytime``): the same count, but a
rung's trials are ranked by their predicted value at the next rung (their value here plus the gain
their kind of configuration made between the two rungs, learned from the trials that reached both;
searchers/next_rung.py) instead of by their value here: DyHPO's idea inside Li et al.'s rule.

Paused trials' states take disk (a DistilBERT trial's ~0.8 GB, trainables.state): with
``pause_disk_bytes`` set, once the paused states take more, the lowest-ranked paused trials (the
largest share of better trials at their rung; at a tie the lower rung) are stopped for good
(``evicted``), and the replay applies the same rule with a stated size per state.

Hyperband brackets (``brackets`` > 1; Li et al. 2020, section 3.3): bracket ``b``'s rungs start at
``grace_period * reduction_factor**b``, so later brackets judge trials on later epochs, a hedge for
tasks whose early epochs mislead; the last of ``n_brackets`` has no rung (its trials run to the end).
Each new trial draws its bracket as Ray's ASHA does (probability proportional to
``e**(its rungs - the most rungs)``), from the scheduler's own seeded generator, so a replay and a
run draw the same; rungs are compared within a bracket only.

Survives ``--resume``: the state is trial ids and numbers (experiments.callbacks.SchedulerState saves
it); a trial Tune restores as PENDING that waits at a rung here is put back to PAUSED.
"""

from __future__ import annotations

import bisect
import math
import random
from typing import Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from searchers.rung_math import RankedValues, bracket_grace, bracket_weights, max_promotions, quantile_cutoff, rungs


RULES = ("top", "quantile")  # Li et al.'s top floor(n / eta); Syne Tune's (1 - 1/eta) quantile
CHOICES = ("value", "curve")  # rank a rung by the values there (Li et al.), or by the predicted next (next_rung.py)


class PromotionASHA(FIFOScheduler):
    _anytime = False  # the defaults for a scheduler pickled (--resume) before ``anytime`` and ``rule`` existed
    _rule = "top"
    _curve = None

    def __init__(self, time_attr: str, max_t: int, grace_period: int = 1, reduction_factor: int = 3,
                 metric: str | None = None, mode: str | None = None, pause_disk_bytes: float | None = None,
                 state_bytes: Callable[[Trial], float | None] | None = None, brackets: int = 1, seed: int = 0,
                 anytime: bool = False, rule: str = "top", choice: str = "value", space: dict | None = None):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"promotion rule {rule!r}: one of {', '.join(RULES)}")
        if choice not in CHOICES or (choice == "curve" and (rule != "top" or space is None)):
            raise ValueError(f"promotion choice {choice!r}: one of {', '.join(CHOICES)}; 'curve' needs the top rule "
                             "and the search space")
        self._time_attr = time_attr
        self._anytime = anytime
        self._rule = rule
        self._metric, self._mode = metric, mode
        self._eta = reduction_factor
        # Every bracket's rungs, numbered together: rung i is (its bracket, its epoch); state is per rung.
        levels = [rungs(bracket_grace(grace_period, reduction_factor, b), reduction_factor, max_t)
                  for b in range(brackets)]
        self._rung_keys = [(b, epoch) for b, epochs in enumerate(levels) for epoch in epochs]
        self._rung_of = [{epoch: self._rung_keys.index((b, epoch)) for epoch in epochs} for b, epochs in enumerate(levels)]
        # where a free worker looks first: the highest epoch, then the earlier bracket
        self._promotion_order = sorted(range(len(self._rung_keys)), key=lambda i: (-self._rung_keys[i][1], i))
        self._bracket_weights = bracket_weights([len(epochs) for epochs in levels])
        self._draw = random.Random(seed)
        self._bracket: dict[str, int] = {}  # trial id -> its bracket
        self._recorded: list[dict[str, float]] = [{} for _ in self._rung_keys]  # rung -> trial id -> signed value
        # rung -> (-signed value, arrival, trial id), best first: the top 1/eta is a prefix, a rank a bisect
        self._ranked: list[list[tuple]] = [[] for _ in self._rung_keys]
        self._promoted: list[set[str]] = [set() for _ in self._rung_keys]  # trial ids that went past each rung
        self._paused: dict[str, int] = {}  # trial id -> the rung it waits at
        self._pause_disk_bytes = pause_disk_bytes
        self._state_bytes = state_bytes or checkpoint_bytes  # None: its state is not on disk yet
        self._sizes: dict[str, float] = {}  # paused trial id -> its state's bytes, once known
        self.evicted: list[str] = []  # trials stopped for good because the paused states took too much disk
        self._max_t = max_t
        if choice == "curve":
            from searchers.next_rung import CurveRanking

            following = [self._rung_of[b].get(epoch * reduction_factor) for b, epoch in self._rung_keys]
            self._curve = CurveRanking(space, seed, following)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        if self._metric and metric and self._metric != metric:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    # --- the rule ---------------------------------------------------------------------------
    def _signed(self, value: float) -> float:
        return value if self._mode == "max" else -value

    def _promotable(self, rung: int, trial_id: str) -> bool:
        """Not promoted from the rung yet, and in the top floor(n / eta) of the n trials recorded there
        (rule "top"), or at or above their (1 - 1/eta) quantile (rule "quantile")."""
        recorded = self._recorded[rung]
        if trial_id in self._promoted[rung] or trial_id not in recorded:
            return False
        if self._rule == "quantile":
            cutoff = quantile_cutoff(RankedValues(self._ranked[rung]), self._eta)
            return cutoff is not None and recorded[trial_id] >= cutoff
        key = recorded[trial_id] if self._curve is None else self._curve.predicted(rung, self._recorded, trial_id)
        better = bisect.bisect_left(self._ranking(rung), (-key,))  # trials strictly better
        return better < max_promotions(len(recorded), self._eta)

    def _ranking(self, rung: int) -> list[tuple]:
        """The order the promotion test reads, best first: by the value at the rung, or ``choice="curve"``:
        by the value predicted at the next rung (searchers/next_rung.py)."""
        return self._ranked[rung] if self._curve is None else self._curve.ranking(rung, self._recorded)

    def _n_promotable(self, rung: int) -> int:
        """How long the prefix of the rung's ranking is that the rule lets through."""
        ranked = self._ranked[rung]
        if self._rule == "quantile":
            cutoff = quantile_cutoff(RankedValues(ranked), self._eta)
            return 0 if cutoff is None else bisect.bisect_right(ranked, (-cutoff, math.inf))
        return max_promotions(len(ranked), self._eta)

    def _bracket_of(self, trial_id: str) -> int:
        if trial_id not in self._bracket:
            weights = self._bracket_weights
            self._bracket[trial_id] = self._draw.choices(range(len(weights)), weights)[0] if len(weights) > 1 else 0
        return self._bracket[trial_id]

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        epoch = result.get(self._time_attr)
        if self._curve is not None and result.get(self._metric) is not None:
            self._curve.remember(trial.trial_id, trial.config)
            if epoch == self._max_t:  # the last rung's next level: what its trials' gains are learned from
                self._curve.final.setdefault(trial.trial_id, self._signed(float(result[self._metric])))
        rung = self._rung_of[self._bracket_of(trial.trial_id)].get(epoch)
        if rung is None or result.get(self._metric) is None:
            return TrialScheduler.CONTINUE
        if trial.trial_id in self._recorded[rung]:  # a resumed trial reports its rung again: nothing new
            return TrialScheduler.CONTINUE
        value = self._signed(float(result[self._metric]))
        self._recorded[rung][trial.trial_id] = value
        bisect.insort(self._ranked[rung], (-value, len(self._recorded[rung]), trial.trial_id))
        if self._promotable(rung, trial.trial_id):
            self._promoted[rung].add(trial.trial_id)
            return TrialScheduler.CONTINUE
        self._paused[trial.trial_id] = rung
        return TrialScheduler.PAUSE

    def on_trial_add(self, tune_controller, trial: Trial):
        self._bracket_of(trial.trial_id)  # drawn in the order trials are created, as Ray's ASHA draws
        if trial.status in (Trial.TERMINATED, Trial.ERROR):  # restored as ended: it waits nowhere
            self._forget(trial.trial_id)
            return
        last = trial.last_result or {}
        if self._time_attr in last:
            # A restored trial. Tune writes its trials' states before the callbacks' (TuneController.save_to_dir),
            # so a run killed in between comes back with this scheduler one snapshot older than its trials: a
            # trial that reached a rung in between resumes from its checkpoint there and never reports the
            # rung again, and would run on past it unjudged (tests/test_promotion.py builds that state). Its
            # last result is judged now as it was then; one already recorded changes nothing.
            self.on_trial_result(tune_controller, trial, last)
        # Tuner.restore re-queues a paused trial as PENDING, and Tune would start it at once; it has not
        # earned its promotion. on_trial_add comes before Tune files the trial under its status.
        if trial.trial_id in self._paused and trial.status == Trial.PENDING:
            trial.set_status(Trial.PAUSED)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        if self._pause_disk_bytes is not None and self._paused:
            self._evict(tune_controller)
        for rung in self._promotion_order:
            for _, _, trial_id in self._ranking(rung)[:self._n_promotable(rung)]:  # best first: the first paused is the best
                if self._paused.get(trial_id) == rung and trial_id not in self._promoted[rung]:
                    return self._resume(tune_controller, trial_id)
        running = False
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                return trial
            running = running or trial.status == Trial.RUNNING
        if self._anytime and self._paused and _search_finished(tune_controller):
            return self._resume(tune_controller, self._best_paused())
        if self._paused and not running:
            # nothing runs and nothing waits: no result can come that would promote them
            self._stop_paused(tune_controller, list(self._paused))
        return None

    def _resume(self, tune_controller, trial_id: str) -> Trial | None:
        """The paused trial to run now; None while Tune is still pausing it (saving its checkpoint, its
        status RUNNING): returned then, Tune would ignore it, and a trial the scheduler had let go
        of would stay PAUSED forever (a real run hung so). Tune asks again at its next step."""
        trial = _find(tune_controller, trial_id)
        if trial.status != Trial.PAUSED:
            return None
        self._promoted[self._paused[trial_id]].add(trial_id)
        self._forget(trial_id)
        return trial

    def _stop_paused(self, tune_controller, trial_ids: list[str]) -> None:
        wanted = set(trial_ids)
        for trial in [t for t in tune_controller.get_trials() if t.trial_id in wanted]:
            self._forget(trial.trial_id)
            tune_controller.stop_trial(trial)

    def _relative_rank(self, trial_id: str) -> tuple[float, int]:
        """(share of the trials at its rung that are strictly better, -its epochs): larger is evicted first."""
        rung = self._paused[trial_id]
        better = bisect.bisect_left(self._ranked[rung], (-self._recorded[rung][trial_id],))
        return better / len(self._recorded[rung]), -self._rung_keys[rung][1]

    def _best_paused(self) -> str:
        """The paused trial with the smallest _relative_rank (anytime's choice once the search is over).
        Each rung's best paused trial is the first paused one in its ranking; across rungs, ties go to
        the one further along (_promotion_order)."""
        firsts = (next((t for _, _, t in self._ranked[rung] if self._paused.get(t) == rung), None)
                  for rung in self._promotion_order)
        return min((t for t in firsts if t is not None), key=self._relative_rank)

    def _evict(self, tune_controller) -> None:
        """Stop the lowest-ranked paused trials for good while the paused states take more than the budget."""
        unknown = {t for t in self._paused if t not in self._sizes}
        if unknown:
            for trial in tune_controller.get_trials():
                if trial.trial_id in unknown:
                    size = self._state_bytes(trial)
                    if size is not None:
                        self._sizes[trial.trial_id] = float(size)
        from searchers.pausing import evictions

        by_rank = sorted((t for t in self._paused if t in self._sizes), key=self._relative_rank)
        victims = evictions(by_rank, self._sizes, self._pause_disk_bytes)
        if victims:
            self.evicted.extend(victims)
            self._stop_paused(tune_controller, victims)

    def _forget(self, trial_id: str) -> None:
        """The trial waits no more (promoted, stopped, ended, failed)."""
        self._paused.pop(trial_id, None)
        self._sizes.pop(trial_id, None)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._forget(trial.trial_id)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial):
        self.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        counts = ", ".join(f"{b}/{level}: {len(r)} ({len(p)} promoted)"
                           for (b, level), r, p in zip(self._rung_keys, self._recorded, self._promoted))
        return f"PromotionASHA rungs (bracket/epoch: trials) {counts}; {len(self._paused)} paused"

    def paused_ids(self) -> set[str]:
        """The trials waiting at a rung now (the searchers' concurrency limit leaves them out: searchers.pausing)."""
        return set(self._paused)

    @property
    def rung_levels(self) -> list[int]:
        """The first bracket's rungs (epochs)."""
        return [epoch for b, epoch in self._rung_keys if b == 0]


def _search_finished(tune_controller) -> bool:
    """Whether the search algorithm will suggest nothing more (Tune's controller exposes it, as Ray's
    HyperBandForBOHB reads it; the replay's stand-in controller does the same)."""
    search_alg = getattr(tune_controller, "search_alg", None)
    return search_alg is not None and search_alg.is_finished()


def _find(tune_controller, trial_id: str) -> Trial:
    return next(t for t in tune_controller.get_trials() if t.trial_id == trial_id)


def checkpoint_bytes(trial: Trial) -> float | None:
    """The size of the trial's latest checkpoint (a paused trial's: its training state), on whatever file
    system it lives; None while it has none."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    from pyarrow.fs import FileSelector, FileType

    infos = checkpoint.filesystem.get_file_info(FileSelector(checkpoint.path, recursive=True))
    return float(sum(info.size for info in infos if info.type == FileType.File))
