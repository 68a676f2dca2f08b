"""Freeze-thaw with DPL's power-law ensemble (searchers/freeze_thaw.py, searchers/power_law.py): the model
recovers power laws, the scheduler thaws a curve that will overtake, minimizes a loss as it maximizes
an accuracy, pairs only with its searcher, and keeps its observations and paused trials over a resume."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from experiments.replay.simulator import replay_method
from experiments.replay.table import table_from_frames


def test_the_fit_recovers_power_laws_from_noisy_curves():
    from searchers.power_law import PowerLawEnsemble, log_expected_improvement

    rng = np.random.default_rng(0)
    x = rng.random((24, 3))
    alpha, beta, gamma = 0.1 + 0.3 * x[:, 0], 0.05 + 0.1 * x[:, 1], 0.3 + 0.7 * x[:, 2]
    rows = [(i, e / 50, alpha[i] + beta[i] * (e / 50) ** -gamma[i] + rng.normal(0, 0.005))
            for i in range(24) for e in range(1, int(rng.integers(3, 25)) + 1)]  # every curve cut before epoch 30 of 50
    index, budget, loss = (np.array(c) for c in zip(*rows))
    model = PowerLawEnsemble(3, seed=1)
    model.fit(x[index.astype(int)], budget, loss)
    predicted = model.predict(x, np.ones(24))  # at the last epoch, never observed
    truth = alpha + beta
    assert predicted.shape == (5, 24)
    assert np.corrcoef(predicted.mean(axis=0), truth)[0, 1] > 0.95
    assert np.abs(predicted.mean(axis=0) - truth).mean() < 0.25 * truth.std()
    # EI prefers a predicted better loss, and still ranks two far worse than the best (no underflow to a tie)
    ei = np.exp(log_expected_improvement(np.array([[0.1, 0.3], [0.1, 0.3]]), 0.2))
    assert ei[0] == pytest.approx(0.1) and ei[1] < 1e-12
    far = log_expected_improvement(np.array([[0.5, 0.6], [0.5001, 0.6001]]), 0.1)
    assert np.isfinite(far).all() and far[0] > far[1]
    restored = pickle.loads(pickle.dumps(model))  # --resume pickles it with the scheduler
    np.testing.assert_allclose(restored.predict(x, np.ones(24)), predicted)


# --- a toy table where the right action is known ------------------------------------------------
EPOCHS = 20
N_CONFIGS = 12


def toy_table(mode: str = "max"):
    """Configuration i's loss is the power law 0.05 + 0.01 i + 0.05 (e / 20)**-(0.9 - 0.07 i): at epoch 1 the
    highest i is best and i = 0 worst, at epoch 20 the order is reversed (i = 0 best). An accuracy (1 - loss,
    maximized) or the loss itself (minimized)."""
    trials, curves = [], []
    metric = "val_accuracy" if mode == "max" else "val_loss"
    for i in range(N_CONFIGS):
        trial_id = f"t{i}"
        trials.append({"trial_id": trial_id, "searcher": "grid", "scheduler": "fifo", "seed": 0, "status": "completed",
                       "config/i": i, "config/epochs": EPOCHS})
        for e in range(1, EPOCHS + 1):
            loss = toy_loss(i, e)
            curves.append({"trial_id": trial_id, "searcher": "grid", "scheduler": "fifo", "seed": 0, "epoch": e,
                           metric: 1 - loss if mode == "max" else loss, "epoch_seconds": 1.0})
    return table_from_frames(pd.DataFrame(trials), pd.DataFrame(curves), space={"i": list(range(N_CONFIGS)),
                             "epochs": [EPOCHS]}, task="toy", epochs_param="epochs", metric=metric, mode=mode,
                             grace_period=1, reduction_factor=3, max_concurrent=1, num_samples=N_CONFIGS)


class FakeTrial:
    def __init__(self, trial_id: str, config: dict, status: str = Trial.PENDING):
        self.trial_id, self.config, self.status, self.last_result = trial_id, config, status, {}

    def set_status(self, status: str):
        self.status = status


class FinishedSearch:
    def is_finished(self):
        return True


class FakeController:
    search_alg = FinishedSearch()

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


def toy_loss(i: int, epoch: int) -> float:
    return 0.05 + 0.01 * i + 0.05 * (epoch / EPOCHS) ** -(0.9 - 0.07 * i)


def toy_scheduler(mode: str):
    from searchers import MethodArgs, build_method

    table = toy_table(mode)
    _, sched = build_method("dpl", "freeze_thaw", MethodArgs(task=table.task_spec(), seed=0, num_samples=N_CONFIGS,
                                                             max_concurrent=1))
    sched.set_search_properties(table.metric, mode)
    return sched, table.metric


def train(sched, metric, mode, i, epochs) -> FakeTrial:
    """Configuration i trained ``epochs`` epochs and paused there, its results reported as Tune would."""
    trial = FakeTrial(f"t{i}", {"i": i, "epochs": EPOCHS})
    sched._untried[sched._index[(i, EPOCHS)]] = False  # as the searcher marks what it suggests
    sched.on_trial_add(None, trial)
    for epoch in range(1, epochs + 1):
        trial.status = Trial.RUNNING
        value = 1 - toy_loss(i, epoch) if mode == "max" else toy_loss(i, epoch)
        decision = sched.on_trial_result(None, trial, {"epoch": epoch, metric: value})
        if decision == TrialScheduler.PAUSE and epoch < epochs:
            assert sched._resume(trial.trial_id) is None  # still RUNNING: not resumed until Tune has paused it
            trial.status = Trial.PAUSED
            assert sched._resume(trial.trial_id) is trial
    sched._paused[trial.trial_id] = epochs  # held at ``epochs`` whatever the last decision
    trial.status = Trial.PAUSED
    return trial


def test_the_fits_adam_step_is_torchs_adam_to_the_bit():
    import torch

    from searchers.power_law import PowerLawEnsemble

    def torchs_step(model, grads):  # Adam.step() itself, as the fit took it before
        for param, grad in zip(model._params, grads):
            param.grad = grad
        model._optimizer.step()
        model._optimizer.zero_grad(set_to_none=True)

    rng = np.random.default_rng(0)
    x, budget = rng.random((120, 4)), rng.integers(1, 51, 120) / 50
    loss = x[:, 0] + 0.2 * budget ** -0.5 + rng.normal(0, 0.01, 120)
    ours, theirs = PowerLawEnsemble(4, seed=2), PowerLawEnsemble(4, seed=2)
    theirs._adam_step = lambda grads: torchs_step(theirs, grads)
    for model in (ours, theirs):
        for n in (20, 60, 120):  # the first fit, then warm refits
            model.fit(x[:n], budget[:n], loss[:n])
    assert all(torch.equal(a, b) for a, b in zip(ours._params, theirs._params))
    assert np.array_equal(ours.predict(x, np.ones(120)), theirs.predict(x, np.ones(120)))


@pytest.mark.parametrize("mode", ["max", "min"])
def test_a_curve_that_will_overtake_is_thawed(mode):
    """Seen: the whole curves of five other configurations (early leaders end behind, slow starters end
    ahead). Paused at epoch 3: configuration 1 (a slow starter, behind) and 11 (ahead now, worst at the
    end). A free worker thaws 1, whichever way the metric points."""
    sched, metric = toy_scheduler(mode)
    for i in (0, 3, 5, 7, 9):
        trial = train(sched, metric, mode, i, EPOCHS)
        sched.on_trial_complete(None, trial, {})
    slow, fast = train(sched, metric, mode, 1, 3), train(sched, metric, mode, 11, 3)
    assert toy_loss(11, 3) < toy_loss(1, 3) and toy_loss(1, EPOCHS) < toy_loss(11, EPOCHS)
    sched._search_open = False
    assert sched.choose_trial_to_run(FakeController([slow, fast])) is slow
    assert sched.paused_ids() == {fast.trial_id}


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_replay_spends_its_budget_and_picks_the_best_trained_of_a_loss_or_an_accuracy(mode):
    table = toy_table(mode)
    run = replay_method(table, "dpl", "freeze_thaw", seed=0, max_concurrent=1, budget=0.5)
    assert 0.5 * table.grid_compute <= run.compute < 0.5 * table.grid_compute + 1.0  # one epoch is 1 s
    trained = {t["key"]: t["epochs"] for t in run.trials if t["epochs"]}
    values = {key: table.value(key, epochs) for key, epochs in trained.items()}
    best = (max if mode == "max" else min)(values.values())
    assert table.value(run.selected["key"], run.selected["epochs"]) == best


def test_new_configurations_are_never_repeated_and_the_initial_design_comes_first():
    table = toy_table()
    run = replay_method(table, "dpl", "freeze_thaw", seed=3, max_concurrent=2, budget=1.0)
    keys = [t["key"] for t in run.trials]
    assert len(keys) == len(set(keys)) == N_CONFIGS  # every configuration once, never twice
    # with the whole budget every trial trains to its last epoch: nothing is left paused
    assert all(t["epochs"] == EPOCHS for t in run.trials)
    # the initial design (n_initial_points(12) = 3) each got an epoch before any trial got its second
    order = run.events.reset_index(drop=True)
    first_second = order.index[order["epoch"] == 2][0]
    assert order.loc[:first_second, "trial_id"].nunique() >= 3


def test_it_runs_only_with_its_searcher():
    from experiments.spec import SpecError, parse_methods
    from searchers import ALL_SCHEDULERS

    assert parse_methods("dpl") == (("dpl", "freeze_thaw"),)
    assert parse_methods("dpl:*") == (("dpl", "freeze_thaw"),)
    for bad in ("dpl:asha", "random:freeze_thaw"):
        with pytest.raises(SpecError, match="runs under freeze_thaw"):
            parse_methods(bad, ALL_SCHEDULERS)


def test_a_snapshot_keeps_the_observations_and_paused_trials_and_refits_the_model():
    from experiments.callbacks import SchedulerState
    from searchers import MethodArgs, build_method

    table = toy_table()
    _, sched = build_method("dpl", "freeze_thaw", MethodArgs(task=table.task_spec(), seed=0, num_samples=12,
                                                             max_concurrent=1))
    sched.set_search_properties("val_accuracy", "max")
    trials = []
    for i in range(4):
        trial = FakeTrial(f"t{i}", sched.suggest())
        sched.on_trial_add(None, trial)
        trial.status = Trial.RUNNING
        decision = sched.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": 0.5 + 0.01 * i})
        trial.status = Trial.PAUSED if decision == TrialScheduler.PAUSE else Trial.RUNNING
        trials.append(trial)
    assert sched.scores() is not None  # 4 observed >= the initial design's 3: the model is fitted
    state = pickle.loads(pickle.dumps(SchedulerState(sched).get_state()))  # what Tune's snapshot holds
    assert "_model" not in state["scheduler"] and "_trials" not in state["scheduler"]
    # a fresh scheduler (as after a kill), restored: the observations and paused trials are back
    _, fresh = build_method("dpl", "freeze_thaw", MethodArgs(task=table.task_spec(), seed=0, num_samples=12,
                                                             max_concurrent=1))
    SchedulerState(fresh).set_state(state)
    assert fresh._obs == sched._obs and fresh.paused_ids() == sched.paused_ids()
    restored = [FakeTrial(t.trial_id, t.config, Trial.PENDING) for t in trials]  # Tune re-queues paused trials
    for trial in restored:
        trial.last_result = {"epoch": 1}
        fresh.on_trial_add(None, trial)
    assert {t.trial_id for t in restored if t.status == Trial.PAUSED} == sched.paused_ids()
    np.testing.assert_array_equal(fresh._untried, sched._untried)  # no configuration suggested twice
    assert fresh.scores() is not None and fresh.fit_steps  # refitted from the kept observations


@pytest.mark.slow
def test_a_real_run_pauses_thaws_and_finishes(ray_session, tmp_path):
    """Breast Cancer's smoke space through Ray Tune: trials pause (their training state saved) and resume
    from it; every curve goes on without a repeated epoch; the pick is scored on the test split."""
    import run_all

    argv = ["--task", "breast_cancer", "--budget", "smoke", "--results-dir", str(tmp_path), "--methods", "dpl",
            "--num-samples", "4", "--max-concurrent", "2", "--quiet"]
    assert run_all.main(argv) == 0
    (run_dir,) = (tmp_path / "breast_cancer").iterdir()
    trials = pd.read_csv(run_dir / "trials.csv")
    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}  # left alone, every trial ends trained
    for trial_id, epochs in curves.groupby("trial_id")["epoch"]:
        assert sorted(epochs) == list(range(1, len(epochs) + 1)), trial_id
    # the initial design (3 configurations) had its first epochs before any trial its second, on 2 workers:
    # the first two paused after one epoch and were resumed from their saved state later
    by_time = curves.sort_values("wall_seconds", kind="stable")
    before_second = by_time.loc[:by_time.index[by_time["epoch"] == 2][0]]
    assert before_second["trial_id"].nunique() >= 3
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary[["searcher", "scheduler"]].values.tolist() == [["dpl", "freeze_thaw"]]
    assert summary["test_accuracy"].notna().all()


@pytest.mark.slow
def test_a_kill_and_resume_keeps_the_paused_trials_and_the_models_observations(ray_session, tmp_path):
    """Killed (SIGKILL, the driver and all it started) while trials are paused, then --resume: the paused
    trials come back paused and go on from their saved state (no epoch twice in a curve), every trial ends,
    and the scheduler's observations from before the kill are still the first of its observations after."""
    from ray import cloudpickle

    from tests.test_reliability import kill_when, resume_to_the_end

    def observations(run_dir):
        """The scheduler's observations in Tune's newest saved callback states ([] before the first save)."""
        # one file per session, named by the session's start time (the files' times are the last sync's)
        files = sorted((run_dir / "tune" / "dpl-freeze_thaw-s0").glob("callback-states-*.pkl"))
        for state in cloudpickle.loads(files[-1].read_bytes()).values() if files else ():
            if isinstance(state, dict) and "scheduler" in state:
                return state["scheduler"]["_obs"]
        return []

    def saved(task_dir):
        runs = list(task_dir.glob("*/tune/dpl-freeze_thaw-s0"))
        try:
            return observations(runs[0].parent.parent) if runs else []
        except Exception:  # noqa: BLE001 - a file Tune is writing right now: not yet
            return []

    results = tmp_path / "results"
    args = ["--task", "breast_cancer", "--budget", "smoke", "--methods", "dpl", "--num-samples", "4",
            "--max-concurrent", "1", "--results-dir", str(results), "--monitor-interval", "0.2"]
    # killed once two trials are paused and the scheduler's state Tune saved holds observations (Tune saves
    # the trials' states before the callbacks': the latter can be one save behind)
    killed_with = kill_when(args, results / "breast_cancer", "dpl-freeze_thaw-s0", tmp_path / "killed-run.log",
                            lambda states: list(states.values()).count("PAUSED") >= 2
                            and len(saved(results / "breast_cancer")) >= 2, poll=0.02)
    (run_dir,) = (results / "breast_cancer").iterdir()
    before = observations(run_dir)
    resume_to_the_end(run_dir)
    trials = pd.read_csv(run_dir / "trials.csv")
    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    paused_at_kill = {t for t, s in killed_with.items() if s == "PAUSED"}
    assert paused_at_kill <= set(trials["trial_id"])
    for trial_id, epochs in curves.groupby("trial_id")["epoch"]:
        assert list(epochs.sort_values()) == list(range(1, len(epochs) + 1)), trial_id
    after = observations(run_dir)  # the resumed session's last save: what it had then, from before the kill on
    assert len(before) >= 2 and after[:len(before)] == before
