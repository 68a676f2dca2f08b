"""A paused trial continues exactly: pause at an epoch, let the worker serve another trial, restore
from the pause's checkpoint, and every later epoch reports what an uninterrupted run reports, for
Breast Cancer and tiny IMDB and CIFAR-10 fixtures (CPU, deterministic)."""

from __future__ import annotations

import json

import pytest

from core.records import RESUMABLE
from trainables import base, cifar10, get_task, imdb
from trainables.state import STATE_FILES, STATE_JSON, flatten, unflatten
from tests.image_fixtures import write_cifar_folder
from tests.text_fixtures import write_imdb_folder, write_tiny_model

REPORTED = ("val_accuracy", "val_loss", "val_f1", "val_auc", "train_loss", "best_val_accuracy")


def curve(results):
    return [tuple(r[k] for k in REPORTED) + (r["epoch"], bool(r.get("done"))) for r in results]


def uninterrupted(cls, config):
    trainable = cls(config=config)
    results = [trainable.train() for _ in range(int(config[trainable.task.epochs_param]))]
    trainable.stop()
    return curve(results)


def paused_and_resumed(cls, config, other, pause_after, folder):
    """Train ``pause_after`` epochs, pause (Tune saves, the worker is cached), give the worker to
    another trial for an epoch (Tune's reuse_actors), then restore the first from its checkpoint
    (as Tune resumes a paused trial: reset_config, then restore) and train it to the end."""
    trainable = cls(config=config)
    results = [trainable.train() for _ in range(pause_after)]
    trainable.save_checkpoint(str(folder))
    trainable.reset_config(other)
    trainable.train()  # the other trial moves every global generator on
    trainable.reset_config(config)
    trainable.load_checkpoint(str(folder))
    while not results[-1].get("done"):
        results.append(trainable.train())
    trainable.stop()
    return curve(results)


def check_exact(cls, config, other, pause_after, tmp_path):
    config = {**config, RESUMABLE: True}
    tmp_path.mkdir(exist_ok=True)
    expected = uninterrupted(cls, config)
    got = paused_and_resumed(cls, config, {**other, RESUMABLE: True}, pause_after, tmp_path)
    assert got == expected
    # the pause wrote the training state, in files whose reading runs no code
    assert set(STATE_FILES) <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pt", ".pkl", ".pth")]


def test_breast_cancer_continues_exactly(tmp_path):
    task = get_task("breast_cancer")
    config = {"batch_size": 32, "num_epochs": 5, "hidden_units": 32, "hidden_layers": 2, "learning_rate": 3e-3,
              "dropout_rate": 0.3, "seed": 3}
    config = {**{name: values[0] for name, values in task.space.items()}, **config}
    check_exact(task.load_trainable(), config, {**config, "seed": 9, "learning_rate": 1e-2}, 2, tmp_path)


def test_imdb_continues_exactly(tmp_path):
    root = tmp_path / "fixtures"
    config = {"data_dir": str(write_imdb_folder(root / "data", n_train=40, n_test=16)),
              "model": str(write_tiny_model(root / "model")), "cache_dir": str(root / "cache"), "subset": None,
              "padding": "dynamic", "learning_rate": 1e-3, "batch_size": 8, "num_train_epochs": 3,
              "max_seq_length": 32, "seed": 0}
    # the linear warm-up/decay schedule and Adam's moments must come back too
    check_exact(imdb.ImdbTrainable, config, {**config, "seed": 5}, 1, tmp_path / "checkpoint")


def test_cifar10_continues_exactly(tmp_path):
    root = tmp_path / "fixtures"
    config = {"data_dir": str(write_cifar_folder(root / "data")), "cache_dir": str(root / "cache"),
              "model": "resnet18", "subset": None, "eval_subset": None, "learning_rate": 1e-3, "batch_size": 32,
              "num_epochs": 3, "dropout_rate": 0.2, "seed": 0}
    # the augmentation's crops and flips are drawn from the run's own generator
    check_exact(cifar10.Cifar10Trainable, config, {**config, "seed": 4}, 2, tmp_path / "checkpoint")


@pytest.fixture
def breast_cancer_config():
    task = get_task("breast_cancer").for_budget("smoke")
    return task, {**{name: values[-1] for name, values in task.space.items()}, "seed": 0}


def test_a_trial_that_ends_keeps_no_training_state(breast_cancer_config, tmp_path):
    """At the last epoch (done) the checkpoint is what scoring needs only, even for a pausing scheduler;
    without RESUMABLE (stopping schedulers) no checkpoint carries the training state."""
    task, config = breast_cancer_config
    for resumable, folder in ((True, tmp_path / "end"), (False, tmp_path / "stopped")):
        folder.mkdir()
        trainable = task.load_trainable()(config={**config, RESUMABLE: resumable})
        results = [trainable.train()]
        while resumable and not results[-1].get("done"):
            results.append(trainable.train())
        trainable.save_checkpoint(str(folder))
        trainable.stop()
        assert sorted(p.name for p in folder.iterdir()) == sorted([base.WEIGHTS_FILE, base.RNG_FILE, base.META_FILE])


def test_the_state_format_round_trips_what_optimizers_hold():
    """int keys, tuples (Adam's betas), None, inf and tensors come back as they were; JSON only."""
    import numpy as np
    import torch

    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
             "param_groups": [{"params": [0], "betas": (0.9, 0.999), "lr": 1e-3, "foreach": None,
                               "max": float("inf")}],
             "numpy": ("MT19937", np.arange(5, dtype=np.uint32), 2, 0, 0.0)}
    tensors = {}
    skeleton = json.loads(json.dumps(flatten(state, tensors)))
    back = unflatten(skeleton, tensors)
    assert list(back["state"]) == [0] and torch.equal(back["state"][0]["exp_avg"], torch.ones(2))
    assert back["param_groups"][0]["betas"] == (0.9, 0.999) and back["param_groups"][0]["foreach"] is None
    assert back["param_groups"][0]["max"] == float("inf")
    assert back["numpy"][1].dtype == np.uint32 and list(back["numpy"][1]) == list(range(5))
    with pytest.raises(TypeError, match="pickling"):
        flatten({"fn": print}, {})


def test_a_pause_checkpoint_restores_on_a_fresh_worker(breast_cancer_config, tmp_path):
    """Tune may resume a paused trial on a new worker (setup, then restore), not the one it paused on."""
    task, config = breast_cancer_config
    config = {**config, RESUMABLE: True}
    cls = task.load_trainable()
    expected = uninterrupted(cls, config)
    first = cls(config=config)
    results = [first.train()]
    first.save_checkpoint(str(tmp_path))
    first.stop()
    second = cls(config=config)
    second.load_checkpoint(str(tmp_path))
    while not results[-1].get("done"):
        results.append(second.train())
    second.stop()
    assert curve(results) == expected
    assert json.loads((tmp_path / STATE_JSON).read_text())  # plain JSON
