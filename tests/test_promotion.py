"""Promotion-type ASHA's decisions against rungs worked out by hand (reduction factor 3, rungs at
epochs 1 and 3 of 9): who pauses, who continues, who is resumed first, and when the paused ones
are stopped for good. A stand-in controller holds the trials' statuses as Tune would."""

from __future__ import annotations

import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from searchers.promotion import PromotionASHA
from searchers.rung_math import max_promotions, rungs

CONTINUE, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.PAUSE


class FakeTrial:
    def __init__(self, trial_id: str, status: str = Trial.PENDING, last_result: dict | None = None):
        self.trial_id, self.status, self.last_result = trial_id, status, last_result or {}

    def set_status(self, status: str):
        self.status = status

    def __repr__(self):
        return self.trial_id


class FakeController:
    def __init__(self, trials):
        self.trials, self.stopped = list(trials), []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = Trial.TERMINATED
        self.stopped.append(trial.trial_id)


def report(scheduler, controller, trial, epoch, value):
    decision = scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val_accuracy": value})
    trial.status = Trial.PAUSED if decision == PAUSE else Trial.RUNNING
    return decision


def scheduler(mode="max"):
    return PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy", mode=mode)


def test_the_rungs_are_ashas():
    assert rungs(1, 3, 9) == [1, 3] and rungs(1, 3, 30) == [1, 3, 9, 27] and rungs(3, 3, 30) == [3, 9, 27]
    assert [max_promotions(n, 3) for n in range(1, 8)] == [0, 0, 1, 1, 1, 2, 2]


def test_one_worker_no_trial_goes_past_a_rung_on_too_few_peers():
    s = scheduler()
    t = {name: FakeTrial(name) for name in ("T1", "T2", "T3", "T4", "T5", "T6")}
    c = FakeController(t.values())
    assert s.choose_trial_to_run(c) is t["T1"]
    t["T1"].status = Trial.RUNNING
    assert report(s, c, t["T1"], 1, 0.5) == PAUSE  # alone at rung 1: floor(1/3) = 0 go on
    assert s.choose_trial_to_run(c) is t["T2"]  # nothing promotable: a new trial
    t["T2"].status = Trial.RUNNING
    assert report(s, c, t["T2"], 1, 0.7) == PAUSE  # 2 at the rung: still none go on
    t["T3"].status = Trial.RUNNING
    assert report(s, c, t["T3"], 1, 0.6) == PAUSE  # 3 at the rung: the top 1 goes on, T2 (0.7), not T3
    assert s.choose_trial_to_run(c) is t["T2"]  # the paused T2 is resumed before a new trial starts
    t["T2"].status = Trial.RUNNING
    assert report(s, c, t["T2"], 2, 0.75) == CONTINUE  # between rungs
    assert report(s, c, t["T2"], 3, 0.8) == PAUSE  # alone at rung 3
    assert s.choose_trial_to_run(c) is t["T4"]
    t["T4"].status = Trial.RUNNING
    assert report(s, c, t["T4"], 1, 0.9) == CONTINUE  # 4 at rung 1, 1 place: T4 ranks first, goes on at once
    assert report(s, c, t["T4"], 3, 0.85) == PAUSE  # 2 at rung 3: none go on
    t["T5"].status = Trial.RUNNING
    assert report(s, c, t["T5"], 1, 0.1) == PAUSE
    t["T6"].status = Trial.RUNNING
    assert report(s, c, t["T6"], 1, 0.65) == PAUSE  # 6 at rung 1, 2 places: T4 and T2 (gone on); T6 third
    assert s.paused_ids() == {"T1", "T3", "T5", "T6", "T2", "T4"}
    # nothing runs, nothing waits to start: no result can promote them, so all stop for good
    assert s.choose_trial_to_run(c) is None
    assert sorted(c.stopped) == ["T1", "T2", "T3", "T4", "T5", "T6"] and not s.paused_ids()


def test_two_workers_a_loss_and_nothing_stopped_while_a_trial_runs():
    s = scheduler(mode="min")  # lower is better
    t = {name: FakeTrial(name) for name in ("A", "B", "C", "D", "E", "F", "G")}
    c = FakeController(t.values())
    t["A"].status = t["B"].status = Trial.RUNNING
    assert report(s, c, t["A"], 1, 0.30) == PAUSE
    assert report(s, c, t["B"], 1, 0.20) == PAUSE
    t["C"].status = t["D"].status = Trial.RUNNING
    assert report(s, c, t["C"], 1, 0.10) == CONTINUE  # 3 at rung 1: the lowest loss goes on at once
    assert report(s, c, t["D"], 1, 0.40) == PAUSE  # 4 at rung 1, 1 place, taken by C
    assert report(s, c, t["C"], 3, 0.05) == PAUSE  # alone at rung 3
    t["E"].status = t["F"].status = Trial.RUNNING
    assert s.choose_trial_to_run(c) is t["G"]  # no paused trial qualifies: the waiting new one
    assert report(s, c, t["E"], 1, 0.15) == PAUSE  # 5 at rung 1, 1 place (C's)
    assert report(s, c, t["F"], 1, 0.12) == CONTINUE  # 6 at rung 1, 2 places: C and F
    assert report(s, c, t["F"], 3, 0.08) == PAUSE  # 2 at rung 3: none go on
    t["G"].status = Trial.RUNNING
    assert s.choose_trial_to_run(c) is None and not c.stopped  # G runs: its result may promote someone
    assert report(s, c, t["G"], 1, 0.50) == PAUSE
    assert s.choose_trial_to_run(c) is None and sorted(c.stopped) == ["A", "B", "C", "D", "E", "F", "G"]


def test_the_highest_rung_is_resumed_first():
    s = PromotionASHA("epoch", max_t=8, grace_period=1, reduction_factor=2, metric="val_accuracy", mode="max")
    assert s.rung_levels == [1, 2, 4]
    q = {name: FakeTrial(name) for name in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6")}
    c = FakeController(q.values())
    q["Q1"].status = q["Q2"].status = Trial.RUNNING
    assert report(s, c, q["Q1"], 1, 0.9) == PAUSE
    assert report(s, c, q["Q2"], 1, 0.8) == PAUSE  # 2 at rung 1, 1 place: Q1's
    assert s.choose_trial_to_run(c) is q["Q1"]
    q["Q1"].status = Trial.RUNNING
    assert report(s, c, q["Q1"], 2, 0.9) == PAUSE  # alone at rung 2
    q["Q3"].status = Trial.RUNNING
    assert report(s, c, q["Q3"], 1, 0.1) == PAUSE
    q["Q4"].status = Trial.RUNNING
    assert report(s, c, q["Q4"], 1, 0.2) == PAUSE  # 4 at rung 1, 2 places: Q1 (gone on), Q2 (paused)
    assert s.choose_trial_to_run(c) is q["Q2"]
    q["Q2"].status = Trial.RUNNING
    assert report(s, c, q["Q2"], 2, 0.5) == PAUSE  # 2 at rung 2, 1 place: Q1 now qualifies, paused
    q["Q5"].status = q["Q6"].status = Trial.RUNNING
    assert report(s, c, q["Q5"], 1, 0.15) == PAUSE
    assert report(s, c, q["Q6"], 1, 0.05) == PAUSE  # 6 at rung 1, 3 places: Q1, Q2, and now Q4
    # both Q1 (rung 2) and Q4 (rung 1) qualify: the one further along first
    assert s.choose_trial_to_run(c) is q["Q1"]
    assert s.choose_trial_to_run(c) is q["Q4"]
    assert s.paused_ids() == {"Q2", "Q3", "Q5", "Q6"}


class FakeSearch:
    def __init__(self):
        self.finished = False

    def is_finished(self):
        return self.finished


def test_anytime_once_the_search_is_over_resumes_the_best_ranked_paused_trial_first():
    s = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max",
                      anytime=True)
    t = {name: FakeTrial(name) for name in ("T1", "T2", "T3", "T4")}
    c = FakeController(t.values())
    c.search_alg = FakeSearch()
    for name, value in (("T1", 0.5), ("T2", 0.7), ("T3", 0.6)):
        assert s.choose_trial_to_run(c) is t[name]
        t[name].status = Trial.RUNNING
        assert report(s, c, t[name], 1, value) == PAUSE
    assert s.choose_trial_to_run(c) is t["T2"]  # the rule: top 1 of 3 at rung 1
    t["T2"].status = Trial.RUNNING
    assert report(s, c, t["T2"], 3, 0.8) == PAUSE  # alone at rung 3
    assert s.choose_trial_to_run(c) is t["T4"]
    t["T4"].status = Trial.RUNNING
    c.search_alg.finished = True  # T4 was the last configuration
    assert report(s, c, t["T4"], 1, 0.55) == PAUSE  # 4 at rung 1, its 1 place taken by T2
    # Nothing qualifies and nothing new comes. Share of strictly better trials at the rung:
    # T2 0/1 (rung 3), T3 1/4, T4 2/4, T1 3/4 (rung 1): T2 goes first, and runs to the end.
    assert s.choose_trial_to_run(c) is t["T2"] and not c.stopped
    t["T2"].status = Trial.TERMINATED
    s.on_trial_complete(c, t["T2"], {})
    assert s.choose_trial_to_run(c) is t["T3"]
    t["T3"].status = Trial.RUNNING
    assert report(s, c, t["T3"], 3, 0.9) == PAUSE  # 2 at rung 3: none go on by the rule
    assert s.choose_trial_to_run(c) is t["T3"]  # 0 of 2 better at rung 3 beats T4's 2 of 4 at rung 1
    t["T3"].status = Trial.TERMINATED
    s.on_trial_complete(c, t["T3"], {})
    assert s.choose_trial_to_run(c) is t["T4"]
    t["T4"].status = Trial.RUNNING
    assert report(s, c, t["T4"], 3, 0.1) == PAUSE
    # T4 at rung 3 (2 of 3 better) against T1 at rung 1 (3 of 4): T4
    assert s.choose_trial_to_run(c) is t["T4"]
    t["T4"].status = Trial.TERMINATED
    s.on_trial_complete(c, t["T4"], {})
    assert s.choose_trial_to_run(c) is t["T1"]
    assert not s.paused_ids() and not c.stopped  # every trial trained to the end, none stopped


def test_a_trial_tune_is_still_pausing_is_resumed_only_once_paused():
    """Tune saves a trial's checkpoint before it marks it PAUSED; meanwhile its status is RUNNING. A
    scheduler that hands it back then loses it: Tune ignores the choice, and the trial stays paused."""
    s = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max",
                      anytime=True)
    t = {name: FakeTrial(name, Trial.RUNNING) for name in ("A", "B")}
    c = FakeController(t.values())
    c.search_alg = FakeSearch()
    c.search_alg.finished = True
    assert report(s, c, t["A"], 1, 0.9) == PAUSE
    decision = s.on_trial_result(c, t["B"], {"epoch": 1, "val_accuracy": 0.5})
    assert decision == PAUSE and t["B"].status == Trial.RUNNING  # Tune is saving B
    assert s.choose_trial_to_run(c) is t["A"]  # A ranks first and is paused
    t["A"].status = Trial.RUNNING
    assert report(s, c, t["A"], 3, 0.9) == PAUSE and s.paused_ids() == {"A", "B"}
    t["A"].status = Trial.RUNNING  # again being saved: A (0 of 1 better at rung 3) is anytime's pick
    assert s.choose_trial_to_run(c) is None and s.paused_ids() == {"A", "B"}  # not lost: asked again later
    t["A"].status = Trial.PAUSED
    assert s.choose_trial_to_run(c) is t["A"] and s.paused_ids() == {"B"}


def test_without_anytime_the_same_run_stops_the_paused_once_nothing_runs():
    s = scheduler()
    t = {name: FakeTrial(name) for name in ("T1", "T2", "T3")}
    c = FakeController(t.values())
    c.search_alg = FakeSearch()
    c.search_alg.finished = True
    for name, value in (("T1", 0.5), ("T2", 0.7)):
        t[name].status = Trial.RUNNING
        assert report(s, c, t[name], 1, value) == PAUSE
    assert s.choose_trial_to_run(c) is t["T3"]
    t["T3"].status = Trial.RUNNING
    assert s.choose_trial_to_run(c) is None and not c.stopped  # T3 runs
    assert report(s, c, t["T3"], 1, 0.6) == PAUSE
    assert s.choose_trial_to_run(c) is t["T2"]  # the rule's promotion
    t["T2"].status = Trial.RUNNING
    assert report(s, c, t["T2"], 3, 0.8) == PAUSE
    assert s.choose_trial_to_run(c) is None and sorted(c.stopped) == ["T1", "T2", "T3"]


# --- the replay runs it: paused trials hold no worker, the clock charges trained epochs only ---------
def test_the_replay_pauses_and_resumes_on_its_recorded_curve():
    from experiments import replay

    table = replay.load_table(replay.BUILTIN / "breast_cancer")  # the shipped 3-seed grid, rungs at 10/30/90
    run = replay.replay_method(table, "random", "promotion", seed=1, num_samples=60, max_concurrent=2)
    events = run.events.sort_values(["sim_time"], kind="stable")
    # each trial's epochs are 1, 2, ... with no gap and no repeat, whatever its pauses
    for trial_id, epochs in events.groupby("trial_id")["epoch"]:
        assert list(epochs) == list(range(1, len(epochs) + 1)), trial_id
    # compute is the recorded seconds of the epochs trained, nothing for waiting
    trained = {t["trial_id"]: t["epochs"] for t in run.trials}
    seconds = 0.0
    for t in run.trials:
        curve = next(c for c in table.curves[t["key"]] if c.seed == t["training_seed"])
        seconds += float(sum(curve.epoch_seconds[:trained[t["trial_id"]]]))
    assert run.compute == pytest.approx(seconds)
    # no trial trains past a rung before eta trials were compared there (Ray's stopping ASHA, with a
    # rung that has no cutoff yet, lets the first trials run on)
    task = table.task_spec()
    levels = rungs(task.grace_period, task.reduction_factor, task.max_t)
    order = run.events.reset_index(drop=True)  # rows in the order the simulator processed them
    for level in levels[:2]:
        at_rung = order.index[order["epoch"] == level]
        past = order.index[order["epoch"] == level + 1]
        assert len(at_rung) >= task.reduction_factor and len(past) > 0, level
        assert past[0] > at_rung[task.reduction_factor - 1], level
    asha = replay.replay_method(table, "random", "asha", seed=1, num_samples=60, max_concurrent=2).events
    asha = asha.reset_index(drop=True)
    first_past = asha.index[asha["epoch"] == levels[0] + 1][0]
    assert first_past < asha.index[asha["epoch"] == levels[0]][task.reduction_factor - 1]  # ASHA's does
    assert any(t["status"] == "paused" or t["status"] == "stopped" for t in run.trials)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_replay_of_anytime_is_promotion_until_the_grid_is_tried_then_spends_the_rest(workers):
    from experiments import replay

    table = replay.load_table(replay.BUILTIN / "breast_cancer")  # 162 configurations
    runs = {scheduler: replay.replay_method(table, "shuffle", scheduler, seed=3, num_samples=10**6,
                                            max_concurrent=workers)
            for scheduler in ("promotion", "promotion_anytime", "fifo")}
    promotion, anytime, fifo = runs["promotion"], runs["promotion_anytime"], runs["fifo"]
    # the same decisions while the searcher had configurations: up to the start of the last new trial
    # (with one worker, up to the end of promotion's run)
    last = promotion.trials[-1]
    curve = next(c for c in table.curves[last["key"]] if c.seed == last["training_seed"])
    started = promotion.events.loc[promotion.events["trial_id"] == last["trial_id"], "sim_time"].min()
    started -= float(curve.epoch_seconds[0])
    before = {name: run.events[run.events["sim_time"] <= started + 1e-9] for name, run in runs.items()}
    assert len(before["promotion"]) > len(promotion.events) / 2
    pd.testing.assert_frame_equal(before["promotion_anytime"], before["promotion"])
    if workers == 1:
        pd.testing.assert_frame_equal(anytime.events.iloc[:len(promotion.events)], promotion.events)
    assert len(anytime.events) > len(promotion.events)
    # then every trial is trained to the end: left alone, it costs what FIFO costs on the same trials
    assert {t["status"] for t in anytime.trials} == {"completed"}
    assert [t["key"] for t in anytime.trials] == [t["key"] for t in fifo.trials]
    assert anytime.compute == pytest.approx(fifo.compute)
    assert promotion.compute < 0.5 * fifo.compute


def test_over_the_disk_budget_the_lowest_ranked_paused_trial_goes_first():
    """Budget: two states of 1 byte. Paused: P1 (2nd of 3 at epoch 1), P2 and P3 (3rd of 3 at epoch 1, and
    last of 3 at epoch 3). P2 and P3 share the worst rank (2 of 3 better); the lower rung goes first: P2."""
    s = PromotionASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy",
                      mode="max", pause_disk_bytes=2, state_bytes=lambda trial: 1)
    trials = {name: FakeTrial(name, Trial.RUNNING) for name in ("P1", "P2", "Q1", "Q2", "P3")}
    c = FakeController(trials.values())
    report(s, c, trials["Q1"], 1, 0.9)  # alone: paused, then the top of three
    report(s, c, trials["P1"], 1, 0.5)
    report(s, c, trials["P2"], 1, 0.1)
    s._forget("Q1")  # as if promoted: it waits no more
    s._promoted[0].add("Q1")
    report(s, c, trials["Q2"], 3, 0.9)
    report(s, c, trials["Q1"], 3, 0.8)
    s._forget("Q2"), s._forget("Q1")
    report(s, c, trials["P3"], 3, 0.1)
    assert s.paused_ids() == {"P1", "P2", "P3"}
    trials["Q1"].status = Trial.RUNNING  # still training: the paused may yet be promoted
    assert s.choose_trial_to_run(c) is None
    assert s.evicted == ["P2"] and c.stopped == ["P2"] and s.paused_ids() == {"P1", "P3"}


# --- Hyperband brackets -----------------------------------------------------------------------------------
def test_brackets_start_their_rungs_later_and_compare_within_themselves():
    """Two brackets of max_t 9, eta 3: bracket 0 compares at epochs 1 and 3, bracket 1 at 3 only. A bracket-1
    trial runs through epoch 1 uncompared and meets only bracket-1 trials at epoch 3."""
    s = PromotionASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy",
                      mode="max", brackets=2)
    assert s._rung_keys == [(0, 1), (0, 3), (1, 3)] and s.rung_levels == [1, 3]
    trials = {name: FakeTrial(name, Trial.RUNNING) for name in ("A1", "A2", "A3", "B1", "B2", "B3")}
    for name, trial in trials.items():
        s._bracket[name] = 0 if name.startswith("A") else 1  # pinned: the draw is tested below
    c = FakeController(trials.values())
    assert report(s, c, trials["B1"], 1, 0.1) == CONTINUE  # no rung at epoch 1 in bracket 1
    assert report(s, c, trials["B1"], 3, 0.9) == PAUSE  # alone at its rung: floor(1/3) = 0 go on
    for name, value in (("A1", 0.5), ("A2", 0.4), ("A3", 0.3)):  # bracket 0's first rung, epoch 1
        assert report(s, c, trials[name], 1, value) == PAUSE  # the first two alone; A3 third of three
    assert report(s, c, trials["B2"], 3, 0.5) == PAUSE
    assert report(s, c, trials["B3"], 3, 0.2) == PAUSE  # three at bracket 1's rung: B1 (0.9) is its top one
    assert s._recorded[1] == {}  # bracket 0's epoch-3 rung: the B trials were not recorded there
    c.trials = list(trials.values())  # all paused, nothing pending
    # every worker free: the highest epoch first (bracket 1's rung at 3), then bracket 0's at 1
    assert [s.choose_trial_to_run(c).trial_id for _ in range(2)] == ["B1", "A1"]


def test_a_new_trial_draws_its_bracket_as_rays_asha_does():
    from searchers.rung_math import bracket_weights, n_brackets

    assert n_brackets(1, 3, 9) == 3 and n_brackets(1, 3, 27) == 4
    weights = bracket_weights([2, 1, 0])
    s = PromotionASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy",
                      mode="max", brackets=3, seed=7)
    c = FakeController([])
    for i in range(3000):
        s.on_trial_add(c, FakeTrial(f"T{i}"))
    shares = [list(s._bracket.values()).count(b) / 3000 for b in range(3)]
    assert shares == pytest.approx([w / sum(weights) for w in weights], abs=0.03)
    again = PromotionASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, brackets=3, seed=7)
    for i in range(50):
        again.on_trial_add(c, FakeTrial(f"T{i}"))
    assert [again._bracket[f"T{i}"] for i in range(50)] == [s._bracket[f"T{i}"] for i in range(50)]  # seeded


def test_bracket1_starts_judging_at_the_second_rung_and_is_capped_at_max_t():
    """promotion_bracket1(_anytime): Hyperband's bracket 1 alone. With grace 1, eta 3, max_t 9 its one rung
    is epoch 3: a trial runs through epoch 1 unjudged and meets its peers at 3. Where grace x eta reaches
    max_t there is no rung, and every trial runs to the end."""
    from types import SimpleNamespace

    from searchers import ALL_SCHEDULERS, PAUSING, MethodArgs

    def made(name, max_t):
        task = SimpleNamespace(resource_attr="epoch", max_t=max_t, grace_period=1, reduction_factor=3)
        return ALL_SCHEDULERS[name](MethodArgs(task=task, seed=0, num_samples=4, max_concurrent=1))

    assert {"promotion_bracket1", "promotion_bracket1_anytime"} <= PAUSING
    s = made("promotion_bracket1", 9)
    s.set_search_properties("val_accuracy", "max")
    assert s.rung_levels == [3] and made("promotion_bracket1_anytime", 30).rung_levels == [3, 9, 27]
    assert made("promotion_bracket1_anytime", 30)._anytime and not s._anytime
    trials = {name: FakeTrial(name, Trial.RUNNING) for name in ("A", "B", "C")}
    c = FakeController(trials.values())
    assert report(s, c, trials["A"], 1, 0.1) == CONTINUE  # epoch 1 is no rung here
    assert [report(s, c, trials[n], 3, v) for n, v in (("A", 0.9), ("B", 0.5), ("C", 0.2))] == [PAUSE] * 3
    assert s.choose_trial_to_run(c) is trials["A"]  # the top one of three at epoch 3 goes on
    capped = made("promotion_bracket1", 3)  # grace x eta = max_t: no rung
    capped.set_search_properties("val_accuracy", "max")
    assert capped.rung_levels == [] and report(capped, c, trials["B"], 2, 0.1) == CONTINUE


def test_it_is_named_never_implied_by_a_star():
    from experiments.spec import parse_methods

    assert ("random", "promotion") not in parse_methods("random:*")  # * is the stopping schedulers
    assert ("random", "promotion") in parse_methods("random:promotion")


def test_the_replay_keeps_the_paused_states_within_the_disk_budget():
    """Two states fit: at no moment are more than two trials paused, and the rest were stopped (evicted)
    lowest-ranked first; without a budget more wait at once."""
    from experiments import replay

    table = replay.load_table(replay.BUILTIN / "breast_cancer")
    free = replay.replay_method(table, "random", "promotion", seed=1, num_samples=60, max_concurrent=2)
    bounded = replay.replay_method(table, "random", "promotion", seed=1, num_samples=60, max_concurrent=2,
                                   pause_disk_gb=2 * 100 / 1024, state_mb=100)
    assert bounded.peak_paused <= 2 < free.peak_paused
    assert bounded.n_evicted > 0 and free.n_evicted == 0


# --- real runs (Ray Tune), on Breast Cancer ------------------------------------------------------------
@pytest.fixture(scope="module")
def promotion_run(ray_session, tmp_path_factory):
    import run_all

    results = tmp_path_factory.mktemp("results")
    argv = ["--task", "breast_cancer", "--budget", "smoke", "--results-dir", str(results), "--methods",
            "random:promotion,bayesopt:promotion", "--num-samples", "8", "--max-concurrent", "2", "--quiet"]
    assert run_all.main(argv) == 0
    (run_dir,) = (results / "breast_cancer").iterdir()
    return run_dir


def test_a_real_run_pauses_resumes_and_leaves_no_training_state(promotion_run):
    import pandas as pd

    from core.records import STATE_FILES

    trials = pd.read_csv(promotion_run / "trials.csv")
    curves = pd.read_csv(promotion_run / "curves.csv")
    assert len(trials) == 16 and set(trials["status"]) <= {"completed", "stopped"}
    # a resumed trial's curve goes on where it paused: epochs 1..n once each, whatever its pauses
    for trial_id, epochs in curves.groupby("trial_id")["epoch"]:
        assert sorted(epochs) == list(range(1, len(epochs) + 1)), trial_id
    assert (trials["status"] == "completed").any() and (trials["status"] == "stopped").any()
    # stopped at a rung (epochs 1 and 3 of the smoke space's 4): paused there and never promoted
    assert set(trials.loc[trials["status"] == "stopped", "epochs"]) <= {1, 3}
    # no paused trial's training state is left behind (stopped for good: dropped; --keep-checkpoints best)
    assert not [p for name in STATE_FILES for p in (promotion_run / "tune").rglob(name)]
    summary = pd.read_csv(promotion_run / "summary.csv")
    assert list(summary["n_evicted"]) == [0, 0] and summary["test_accuracy"].notna().all()


def test_a_real_run_with_a_tiny_disk_budget_evicts_and_says_so(ray_session, tmp_path):
    import pandas as pd

    import run_all

    argv = ["--task", "breast_cancer", "--budget", "smoke", "--results-dir", str(tmp_path), "--methods",
            "random:promotion", "--num-samples", "8", "--max-concurrent", "2", "--quiet", "--pause-disk-gb", "1e-6"]
    assert run_all.main(argv) == 0
    (run_dir,) = (tmp_path / "breast_cancer").iterdir()
    trials = pd.read_csv(run_dir / "trials.csv")
    summary = pd.read_csv(run_dir / "summary.csv")
    evicted = trials[trials["status"] == "evicted"]
    assert len(evicted) > 0 and summary["n_evicted"].iloc[0] == len(evicted)
    assert set(evicted["epochs"]) <= {1, 3}  # paused at a rung, never trained on


@pytest.mark.slow
def test_paused_trials_stay_paused_across_a_kill_and_resume(ray_session, tmp_path):
    """Killed while trials wait at a rung, then --resume: Tune re-queues them as PENDING and would start
    them; the restored scheduler keeps them paused until they earn a promotion. So, over the whole run,
    no more trials went past a rung than its top 1/eta allows, and every curve goes on without a gap."""
    import pandas as pd

    from tests.test_reliability import kill_when, resume_to_the_end

    results = tmp_path / "results"
    args = ["--task", "breast_cancer", "--budget", "smoke", "--methods", "random:promotion", "--num-samples", "12",
            "--max-concurrent", "1", "--results-dir", str(results), "--monitor-interval", "0.2"]
    killed_with = kill_when(args, results / "breast_cancer", "random-promotion-s0", tmp_path / "killed-run.log",
                            lambda states: list(states.values()).count("PAUSED") >= 2, poll=0.02)
    (run_dir,) = (results / "breast_cancer").iterdir()
    resume_to_the_end(run_dir)
    trials = pd.read_csv(run_dir / "trials.csv")
    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(trials) == 12
    for level in (1, 3):  # the smoke space's rungs (grace period 1, eta 3, 4 epochs at most)
        reached = int((trials["epochs"] >= level).sum())
        assert int((trials["epochs"] > level).sum()) <= max_promotions(reached, 3), level
    for trial_id, epochs in curves.groupby("trial_id")["epoch"]:
        assert list(epochs.sort_values()) == list(range(1, len(epochs) + 1)), trial_id
    paused_at_kill = [t for t, s in killed_with.items() if s == "PAUSED"]
    assert set(paused_at_kill) <= set(trials["trial_id"])


def test_a_scheduler_restored_one_snapshot_behind_its_trials_catches_up():
    """Tune saves the trials' states before the scheduler's (SchedulerState, a callback), so a kill in
    between restores the scheduler as it was one snapshot earlier. A trial that paused at a rung since
    then comes back from its checkpoint there and must be judged there, not run on past the rung; a
    trial the old state holds as paused but that has ended since must not be waited for."""
    import copy

    from experiments.callbacks import SchedulerState

    s = scheduler()
    t = {name: FakeTrial(name) for name in ("T0", "T1", "T2", "T3", "T4")}
    c = FakeController(t.values())
    for name, value in (("T0", 0.95), ("T1", 0.5), ("T2", 0.7)):
        t[name].status = Trial.RUNNING
        assert report(s, c, t[name], 1, value) == PAUSE
    snapshot = copy.deepcopy(SchedulerState(s).get_state())  # what the callbacks' file holds at the kill
    assert s.choose_trial_to_run(c) is t["T0"]  # then T0 is promoted and runs to the end
    t["T0"].status = Trial.RUNNING
    for epoch in range(2, 10):
        report(s, c, t["T0"], epoch, 0.96)
    t["T0"].status = Trial.TERMINATED
    s.on_trial_complete(c, t["T0"], {})
    t["T3"].status = Trial.RUNNING
    assert report(s, c, t["T3"], 1, 0.1) == PAUSE  # and T3 pauses at rung 1; then the kill

    restored = scheduler()
    SchedulerState(restored).set_state(snapshot)
    results = {"T0": {"epoch": 9, "val_accuracy": 0.96}, "T1": {"epoch": 1, "val_accuracy": 0.5},
               "T2": {"epoch": 1, "val_accuracy": 0.7}, "T3": {"epoch": 1, "val_accuracy": 0.1}}
    back = {name: FakeTrial(name, Trial.TERMINATED if name == "T0" else Trial.PENDING, results.get(name))
            for name in t}  # Tune re-queues the unfinished as PENDING, with their last results
    c = FakeController(back.values())
    for trial in back.values():
        restored.on_trial_add(c, trial)
    assert restored.paused_ids() == {"T1", "T2", "T3"}
    assert [back[n].status for n in ("T1", "T2", "T3")] == [Trial.PAUSED] * 3
    assert len(restored._recorded[0]) == 4  # T3 counts at rung 1, as in the run that was killed
    assert restored.choose_trial_to_run(c) is back["T4"]  # not T3 past its rung, nor a wait for the ended T0


def test_a_paused_trial_is_no_pending_point_of_the_gp(monkeypatch):
    """rungbo under promotion: the GP is conditioned only on trials that hold a worker (at most
    max_concurrent), never on the many paused at a rung; with every paused trial pending one LCBench
    replay conditioned on ~1,900 believed points and took 340 s."""
    from experiments import replay
    from searchers.rungbo import RungBOSearcher

    seen = []
    suggest = RungBOSearcher._model_suggestion

    def spy(self, observed, pending):
        seen.append((len(pending), len(getattr(self, "paused", ()))))
        return suggest(self, observed, pending)

    monkeypatch.setattr(RungBOSearcher, "_model_suggestion", spy)
    table = replay.load_table(replay.BUILTIN / "breast_cancer")
    replay.replay_method(table, "rungbo", "promotion", seed=0, num_samples=40, max_concurrent=2)
    assert seen and max(p for p, _ in seen) <= 2
    assert max(n for _, n in seen) > 2  # there were more paused trials than workers to leave out


def test_a_trial_id_drawn_again_while_live_is_declined_not_a_crash():
    """Ray draws 8 random hex digits per trial id; its ConcurrencyLimiter asserts a new id is not live."""
    from ray.tune.search import Searcher

    from searchers.pausing import PauseAwareLimiter

    class Counting(Searcher):
        def __init__(self):
            super().__init__(metric="val_accuracy", mode="max")
            self.asked = []

        def suggest(self, trial_id):
            self.asked.append(trial_id)
            return {"x": len(self.asked)}

    inner = Counting()
    limiter = PauseAwareLimiter(inner, max_concurrent=2, paused=lambda: set())
    assert limiter.suggest("a") == {"x": 1}
    assert limiter.suggest("a") is None and inner.asked == ["a"]  # Tune draws a new id at its next step
    assert limiter.suggest("b") == {"x": 2}


def test_the_quantile_rule_is_syne_tunes_and_lets_the_best_of_two_through():
    """rule="quantile" (Syne Tune 0.13's Rung.quantile): at or above the rung's (1 - 1/3) quantile of the
    values recorded there (numpy's linear interpolation), from two trials on. Worked by hand, rung 1:
    [0.5] no cutoff; [0.5, 0.7] cutoff 0.5 + 2/3 * 0.2 = 0.633; [0.5, 0.7, 0.6] cutoff 0.6 + 1/3 * 0.1
    = 0.633; with 0.9 added, cutoff 0.6 + 0.1 = 0.7 (the 2/3 quantile is the 3rd of 4 sorted)."""
    from searchers.rung_math import quantile_cutoff

    assert quantile_cutoff([0.7, 0.5], 3) == pytest.approx(0.5 + 2 / 3 * 0.2)
    assert quantile_cutoff([0.9, 0.7, 0.6, 0.5], 3) == pytest.approx(0.7) and quantile_cutoff([0.5], 3) is None
    s = PromotionASHA("epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max",
                      rule="quantile")
    t = {name: FakeTrial(name) for name in ("T1", "T2", "T3", "T4", "T5")}
    c = FakeController(t.values())
    t["T1"].status = Trial.RUNNING
    assert report(s, c, t["T1"], 1, 0.5) == PAUSE  # alone: no quantile yet
    t["T2"].status = Trial.RUNNING
    assert report(s, c, t["T2"], 1, 0.7) == CONTINUE  # 0.7 >= 0.633: the best of two goes on (top rule: none)
    t["T3"].status = Trial.RUNNING
    assert report(s, c, t["T3"], 1, 0.6) == PAUSE  # 0.6 < 0.633
    assert s.choose_trial_to_run(c) is t["T4"]  # T1 (0.5) and T3 (0.6) are below it: a new trial
    t["T4"].status = Trial.RUNNING
    assert report(s, c, t["T4"], 1, 0.9) == CONTINUE  # cutoff 0.7: T4 and T2 are at or above it
    t["T5"].status = Trial.RUNNING
    assert report(s, c, t["T5"], 1, 0.65) == PAUSE  # 5 recorded: cutoff 0.6 + 2/3 * 0.1 = 0.667
    assert s.choose_trial_to_run(c) is None or s.paused_ids() == set()  # nothing qualifies, nothing waits
    with pytest.raises(ValueError, match="promotion rule"):
        PromotionASHA("epoch", max_t=9, rule="median")
