"""The rung-aware BayesOpt searcher (searchers/rungbo.py), through Ray's Searcher API as Tune
and ASHA drive it: every report ASHA lets continue reaches on_trial_result, the report at
which it stops a trial reaches on_trial_complete only."""

from __future__ import annotations

import math

import pytest
from ray import tune

from searchers.rungbo import RungBOSearcher

SPACE = {"x": tune.choice(list(range(20))), "y": tune.choice([0, 1, 2, 3])}


def make(**kwargs) -> RungBOSearcher:
    return RungBOSearcher(space=SPACE, metric="acc", mode="max", resource_attr="epoch", random_state=0, **kwargs)


def run_to(s, trial_id, config_value, epochs, stopped=True, metric="acc"):
    """Report epochs 1..epochs; the last report is the one ASHA stops at (on_trial_complete only)."""
    for epoch in range(1, epochs + 1):
        result = {metric: config_value(epoch), "epoch": epoch}
        if epoch < epochs:
            s.on_trial_result(trial_id, result)
        elif stopped:
            s.on_trial_complete(trial_id, result)
        else:
            s.on_trial_result(trial_id, result)


def test_the_model_is_fitted_at_the_highest_rung_with_enough_trials():
    s = make(min_points=3)
    assert s.level() is None
    for i in range(6):  # six trials stopped at rung 1, three promoted to rung 3 and stopped there
        s.suggest(str(i))
        run_to(s, str(i), lambda e, i=i: 0.1 * i + 0.01 * e, 1 if i < 3 else 3)
    assert s.level() == 3.0
    observed, pending = s._training_data()
    assert len(observed) == 3 and pending == []
    # each counts with its best value up to the level, including the stopping report
    assert sorted(round(t, 2) for _, t in observed) == [0.33, 0.43, 0.53]


def test_it_learns_from_the_rung_not_from_each_trials_last_report():
    # On epoch 1, x looks best near 0; by epoch 9 the truth is x near 15. BayesOptSearcher's
    # last-report rule mixes one-epoch and nine-epoch scores; the rung rule fits the 9-epoch ones.
    from searchers.bayesopt import BayesOptSearcher

    rung = make(min_points=4, n_initial_points=8)
    plain = BayesOptSearcher(space=SPACE, metric="acc", mode="max", random_state=0, n_initial_points=8)
    # accuracy rises with epochs (so a trial's best up to epoch 9 is its epoch-9 score)
    truth = lambda x, e: -abs(x - 15) if e >= 9 else -abs(x) - 20  # noqa: E731
    for s in (rung, plain):
        for i in range(8):
            config = s.suggest(str(i))
            epochs = 9 if i % 2 == 0 else 1  # ASHA promoted half of them
            run_to(s, str(i), lambda e, x=config["x"]: truth(x, e), epochs)
    assert rung.level() == 9.0
    observed, _ = rung._training_data()
    xs = [rung._to_config(p)["x"] for p, _ in observed]
    assert [t for _, t in observed] == [truth(x, 9) for x in xs] and len(xs) == 4
    plain_observed, _ = plain._training_data()
    assert len(plain_observed) == 8  # four of them one-epoch scores of another shape
    for s in (rung, plain):
        assert s.suggest("next") is not None


def test_running_trials_below_the_level_are_pending_and_failures_score_the_worst():
    s = make(min_points=2)
    for i in range(3):
        s.suggest(str(i))
        run_to(s, str(i), lambda e, i=i: 0.5 + 0.1 * i, 2)
    s.suggest("running")
    s.on_trial_result("running", {"acc": 0.9, "epoch": 1})
    s.suggest("failed")
    s.on_trial_complete("failed", None, error=True)
    s.suggest("nan")
    s.on_trial_complete("nan", {"acc": math.nan, "epoch": 1})
    observed, pending = s._training_data()
    assert s.level() == 2.0
    assert len(pending) == 1
    targets = sorted(t for _, t in observed)
    assert targets[:2] == [0.5, 0.5] and len(targets) == 5  # two failures at the worst value


def test_mode_min_and_save_restore(tmp_path):
    s = RungBOSearcher(space=SPACE, metric="loss", mode="min", resource_attr="epoch", min_points=2)
    for i in range(4):
        s.suggest(str(i))
        run_to(s, str(i), lambda e, i=i: 1.0 - 0.1 * i, 2, metric="loss")
    observed, _ = s._training_data()
    assert max(t for _, t in observed) == pytest.approx(-0.7)
    s.save(str(tmp_path / "s.pkl"))
    restored = RungBOSearcher()
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.suggest("a") == s.suggest("a")


def test_min_points_is_checked():
    with pytest.raises(ValueError, match="min_points must be at least 2"):
        make(min_points=1)
