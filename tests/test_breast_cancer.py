"""The Breast Cancer task: its split, its training run and its Trainable, without Tune."""

from __future__ import annotations

import math

import numpy as np
import pytest
import ray.tune.trainable.trainable as ray_trainable

from trainables import get_task
from trainables.base import classification_metrics, evaluate_checkpoint
from trainables.breast_cancer import BreastCancerTrainable, load_data

CONFIG = {"learning_rate": 1e-3, "batch_size": 32, "num_epochs": 3, "hidden_layers": 2, "hidden_units": 32, "seed": 0}


@pytest.fixture(autouse=True)
def trainable_logdir(tmp_path, monkeypatch):
    # Outside Tune a Trainable makes its log folder under ~/ray_results: keep it in tmp_path.
    monkeypatch.setattr(ray_trainable, "DEFAULT_STORAGE_PATH", str(tmp_path / "ray_results"))


def make_trainable(tmp_path, config=CONFIG):
    return BreastCancerTrainable(config=dict(config))


def test_task_declares_the_design_space():
    task = get_task("breast_cancer")
    assert task.grid_size == 162
    assert task.max_t == 100
    assert task.metric == "val_accuracy" and task.mode == "max"
    smoke = task.for_budget("smoke")
    assert smoke.grid_size < task.grid_size and smoke.max_t <= 4


def test_split_is_fixed_stratified_and_standardized_on_train_only():
    data = load_data({})
    sizes = {split: len(y) for split, (x, y) in data.items()}
    assert sizes == {"train": 341, "val": 114, "test": 114}
    rates = [y.mean() for _, y in data.values()]
    assert max(rates) - min(rates) < 0.02  # stratified: the same share of benign cases
    x_train = data["train"][0]
    assert np.allclose(x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(x_train.std(axis=0), 1, atol=1e-3)
    assert not np.allclose(data["val"][0].mean(axis=0), 0, atol=1e-3)  # not refitted on validation
    assert load_data({})["train"][0] is x_train  # loaded once per process


def test_metrics_binary_and_multiclass():
    y = np.array([0, 1, 1, 0])
    m = classification_metrics(y, np.array([0.1, 0.9, 0.4, 0.2]))
    assert m["accuracy"] == 0.75 and m["auc"] == 1.0
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    m = classification_metrics(np.array([0, 1, 2, 1]), proba)
    assert m["accuracy"] == 1.0 and m["f1"] == 1.0 and m["auc"] == 1.0


def test_a_step_is_an_epoch_and_the_trial_ends_itself(tmp_path):
    trainable = make_trainable(tmp_path)
    results = [trainable.train() for _ in range(3)]
    assert [r["epoch"] for r in results] == [1, 2, 3]
    assert [r["done"] for r in results] == [False, False, True]
    for r in results:
        for key in ("val_accuracy", "val_f1", "val_auc", "val_loss", "epoch_seconds"):
            assert math.isfinite(r[key])
        assert 0 <= r["val_accuracy"] <= 1 and 0 <= r["val_auc"] <= 1
    assert results[-1]["val_loss"] < results[0]["val_loss"]
    assert results[-1]["best_val_accuracy"] == max(r["val_accuracy"] for r in results)
    trainable.stop()


def test_reset_config_reuses_the_worker_for_a_new_trial(tmp_path):
    trainable = make_trainable(tmp_path)
    first = trainable.train()
    trainable.train()
    assert trainable.reset_config({**CONFIG, "hidden_layers": 1}) is True
    assert trainable._epoch == 0
    again = make_trainable(tmp_path / "fresh", {**CONFIG, "hidden_layers": 1}).train()
    trainable.config = {**CONFIG, "hidden_layers": 1}
    assert trainable.step()["val_loss"] == pytest.approx(again["val_loss"])
    assert first["epoch"] == 1


def test_a_restored_checkpoint_holds_the_best_weights_and_the_counters(tmp_path):
    # Tune checkpoints a trial only as it ends, so a checkpoint is that trial's record (its
    # best-validation weights), not a point to continue training from: a retried or resumed
    # trial starts again at epoch 1 (docs/ARCHITECTURE.md, "Failures and resume").
    original = make_trainable(tmp_path / "a", {**CONFIG, "num_epochs": 4})
    results = [original.train() for _ in range(3)]
    checkpoint = original.save()
    restored = make_trainable(tmp_path / "b", {**CONFIG, "num_epochs": 4})
    restored.restore(checkpoint)
    assert restored._epoch == 3 and restored._best == max(r["val_accuracy"] for r in results)
    assert restored._run.evaluate("val")["accuracy"] == restored._best  # the best weights are loaded


def test_test_split_is_scored_with_the_best_validation_weights(tmp_path):
    trainable = make_trainable(tmp_path, {**CONFIG, "num_epochs": 3})
    for _ in range(3):
        trainable.train()
    checkpoint = trainable.save().checkpoint
    best = trainable._best_model
    metrics = evaluate_checkpoint(BreastCancerTrainable, trainable.config, checkpoint.path, "test")
    assert set(metrics) >= {"accuracy", "f1", "auc", "loss"}
    # the same weights scored on validation give the trial's best validation accuracy
    val = evaluate_checkpoint(BreastCancerTrainable, trainable.config, checkpoint.path, "val")
    assert val["accuracy"] == trainable._best
    assert best is not None


def test_a_diverging_trial_stops_with_the_worst_values(tmp_path):
    # a step size this large overflows float32 within the first epoch
    trainable = make_trainable(tmp_path, {**CONFIG, "learning_rate": 1e30})
    result = trainable.train()
    assert result["diverged"] is True and result["done"] is True
    assert result["val_accuracy"] == 0.0 and result["val_auc"] == 0.5
    assert not math.isnan(result["val_loss"])
