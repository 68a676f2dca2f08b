"""The learning-curve-aware choice of promotion ASHA (searchers/next_rung.py): a rung ranked by each
trial's predicted value at the next rung, its value there plus the gain its kind of configuration
made between the two rungs."""

from __future__ import annotations

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from searchers.next_rung import CurveRanking
from searchers.promotion import PromotionASHA

SPACE = {"lr": tune.choice([0.001, 0.01, 0.1]), "width": tune.choice([16, 32])}  # d = 2: a model from 3 gains on
SLOW, FAST = {"lr": 0.001, "width": 16}, {"lr": 0.1, "width": 16}  # a slow starter gains 0.4 by the next rung


def ranking(recorded):
    curve = CurveRanking(SPACE, seed=0, next_rung=[1, None])
    for trial_id in recorded[0]:
        curve.remember(trial_id, SLOW if trial_id.startswith("slow") else FAST)
    return [trial_id for _, _, trial_id in curve.ranking(0, recorded)]


def test_a_slow_starter_is_ranked_by_where_its_kind_is_heading():
    here = {"slow1": 0.30, "slow2": 0.35, "slow3": 0.32, "fast1": 0.60, "fast2": 0.65, "fast3": 0.62,
            "slow4": 0.40, "fast4": 0.55}
    there = {"slow1": 0.70, "slow2": 0.75, "slow3": 0.72, "fast1": 0.60, "fast2": 0.65, "fast3": 0.62}
    order = ranking([here, there])
    # slow4 (0.40 now, ~0.80 predicted) goes before fast4 (0.55 now, ~0.55 predicted), and before
    # every fast trial; among the slow ones and among the fast ones the order is their values'
    assert order.index("slow4") < min(order.index(f) for f in ("fast1", "fast2", "fast3", "fast4"))
    assert order.index("slow2") < order.index("slow3") < order.index("slow1")
    assert order.index("fast2") < order.index("fast3") < order.index("fast1") < order.index("fast4")


def test_below_d_plus_one_gains_the_ranking_is_the_values():
    here = {"slow1": 0.30, "fast1": 0.60, "slow2": 0.40, "fast2": 0.55}
    there = {"slow1": 0.70, "fast1": 0.60}  # two gains, the model needs three
    assert ranking([here, there]) == ["fast1", "fast2", "slow2", "slow1"]


class FakeTrial:
    def __init__(self, trial_id: str, config: dict):
        self.trial_id, self.config, self.status, self.last_result = trial_id, config, Trial.RUNNING, {}


def test_the_scheduler_lets_the_slow_starter_through_where_the_rule_pauses_it():
    """Rungs at epochs 1 and 3 of 9, eta 3. Three slow and three fast trials reach rung 3, and their
    gains teach the model; then at rung 1 a slow starter arrives below a fast one."""
    def run(choice):
        s = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="acc", mode="max",
                          choice=choice, space=SPACE if choice == "curve" else None)
        history = [("slow1", SLOW, 0.30, 0.70), ("fast1", FAST, 0.60, 0.60), ("slow2", SLOW, 0.35, 0.75),
                   ("fast2", FAST, 0.65, 0.65), ("slow3", SLOW, 0.32, 0.72), ("fast3", FAST, 0.62, 0.62)]
        for trial_id, config, at_1, at_3 in history:  # as results: what reaches rung 3 is recorded there
            s._recorded[0][trial_id] = at_1
            s._ranked[0].append((-at_1, len(s._recorded[0]), trial_id))
            s._recorded[1][trial_id] = at_3
            s._ranked[1].append((-at_3, len(s._recorded[1]), trial_id))
            s._promoted[0].add(trial_id)
            if s._curve is not None:
                s._curve.remember(trial_id, config)
        s._ranked[0].sort()
        s._ranked[1].sort()
        decisions = {}
        for trial_id, config, value in (("fast4", FAST, 0.58), ("slow4", SLOW, 0.45), ("fast5", FAST, 0.50)):
            decisions[trial_id] = s.on_trial_result(None, FakeTrial(trial_id, config), {"epoch": 1, "acc": value})
        return decisions

    # 9 at rung 1 (3 places, taken by the 3 promoted before, by value: the rule lets nothing more through;
    # by prediction the slow ones, ~0.7 at rung 3, rank above the fast ones, and slow4 (~0.85) first)
    assert run("value") == {"fast4": TrialScheduler.PAUSE, "slow4": TrialScheduler.PAUSE, "fast5": TrialScheduler.PAUSE}
    curve = run("curve")
    assert curve["slow4"] == TrialScheduler.CONTINUE and curve["fast4"] == TrialScheduler.PAUSE


def test_the_curve_choice_needs_the_top_rule_and_the_space():
    import pytest

    with pytest.raises(ValueError, match="choice"):
        PromotionASHA("epoch", max_t=9, choice="curve")
    with pytest.raises(ValueError, match="choice"):
        PromotionASHA("epoch", max_t=9, choice="curve", space=SPACE, rule="quantile")


def test_the_curve_survives_resume_as_the_scheduler_state_does():
    """SchedulerState pickles the scheduler's __dict__ (Tune's experiment snapshot): the fitted gain
    models and the remembered configurations come back, and rank as before."""
    import pickle

    from experiments.callbacks import SchedulerState

    here = {"slow1": 0.30, "slow2": 0.35, "slow3": 0.32, "fast1": 0.60, "fast2": 0.65, "fast3": 0.62, "slow4": 0.40}
    there = {"slow1": 0.70, "slow2": 0.75, "slow3": 0.72, "fast1": 0.60, "fast2": 0.65, "fast3": 0.62}
    s = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="acc", mode="max", choice="curve",
                      space=SPACE)
    s._recorded[0].update(here)
    s._recorded[1].update(there)
    for trial_id in here:
        s._curve.remember(trial_id, SLOW if trial_id.startswith("slow") else FAST)
    before = s._ranking(0)
    again = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="acc", mode="max",
                          choice="curve", space=SPACE)
    SchedulerState(again).set_state(pickle.loads(pickle.dumps(SchedulerState(s).get_state())))
    assert again._ranking(0) == before and before[0][2] == "slow4"
    again._recorded[0]["fast4"] = 0.9  # and it goes on: a new trial is predicted with the restored model
    again._curve.remember("fast4", FAST)
    assert again._ranking(0)[0][2] == "fast4"
