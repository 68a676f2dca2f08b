"""The CIFAR-10 task on a tiny synthetic parquet fixture in the real schema."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.tune.trainable.trainable as ray_trainable
import torch

import run_all
from tests.image_fixtures import write_cifar_folder
from tests.memory import watch_release
from trainables import cifar10, get_task
from trainables.base import choose_device


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return {"data_dir": str(write_cifar_folder(root / "data")), "cache_dir": str(root / "cache"), "root": root}


def config(fixture_dirs, **overrides):
    base = {"data_dir": fixture_dirs["data_dir"], "cache_dir": fixture_dirs["cache_dir"], "model": "resnet18",
            "subset": None, "eval_subset": None, "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 2,
            "dropout_rate": 0.2, "seed": 0}
    return {**base, **overrides}


def test_task_declares_the_design_space():
    task = get_task("cifar10")
    assert task.grid_size == 54 and task.max_t == 30
    assert task.for_budget("smoke").options["subset"] == 200


def test_decoded_images_are_cached_and_reused(fixture_dirs, monkeypatch, tmp_path):
    cache = str(tmp_path / "cache")
    first = cifar10.load_decoded(fixture_dirs["data_dir"], cache)
    assert first["train"][0].shape == (100, 32, 32, 3) and first["train"][0].dtype == np.uint8
    assert first["test"][0].shape == (40, 32, 32, 3)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds the images")

    monkeypatch.setattr(cifar10, "decode_images", no_decoding)
    second = cifar10.load_decoded(fixture_dirs["data_dir"], cache)
    assert np.array_equal(second["train"][0], first["train"][0])
    assert np.array_equal(second["test"][1], first["test"][1])


def test_a_changed_source_is_not_served_stale(tmp_path):
    data_dir = write_cifar_folder(tmp_path / "data", seed=1)
    cache = str(tmp_path / "cache")
    before = cifar10.load_decoded(str(data_dir), cache)
    write_cifar_folder(data_dir, seed=2)
    after = cifar10.load_decoded(str(data_dir), cache)
    assert cifar10.cache_folder(str(data_dir), cache).exists()
    assert not np.array_equal(before["train"][0], after["train"][0])


def test_validation_split_is_seeded_stratified_and_subset(fixture_dirs):
    cifar10._load.cache_clear()
    data = cifar10.load_data(config(fixture_dirs))
    sizes = {split: len(y) for split, (_, y) in data.items()}
    assert sizes == {"train": 90, "val": 10, "test": 40}  # a tenth of train validates
    assert np.bincount(data["val"][1]).tolist() == [1] * 10
    again = cifar10._load.__wrapped__(fixture_dirs["data_dir"], fixture_dirs["cache_dir"], None, None)
    assert np.array_equal(again["val"][0], data["val"][0])  # the same split every time
    small = cifar10._load.__wrapped__(fixture_dirs["data_dir"], fixture_dirs["cache_dir"], 30, 10)
    assert [len(small[s][1]) for s in ("train", "val", "test")] == [30, 10, 10]
    assert np.bincount(small["train"][1]).tolist() == [3] * 10
    cifar10._load.cache_clear()


def test_augmentation_crops_and_flips_on_the_tensor():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    out = cifar10.augment(images, *cifar10.draw_augmentation(2, torch.Generator().manual_seed(0)))
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for b in range(2):  # every output is a (possibly flipped) 32x32 window of the padded image
        windows = [padded[b, :, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(2)) for w in windows)
    many = cifar10.augment(images.repeat(50, 1, 1, 1), *cifar10.draw_augmentation(100, torch.Generator().manual_seed(1)))
    assert len({tuple(m[0, 10, :3].tolist()) for m in many}) > 10  # the crops differ per image


def test_resnet18_has_the_32x32_stem_and_dropout():
    model = cifar10.build_model("resnet18", 0.5)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.5
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    effnet = cifar10.build_model("efficientnet_b0", 0.2)
    assert effnet(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_one_epoch_through_the_trainable(fixture_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_trainable, "DEFAULT_STORAGE_PATH", str(tmp_path))
    trainable = cifar10.Cifar10Trainable(config=config(fixture_dirs, num_epochs=1))
    result = trainable.train()
    assert result["epoch"] == 1 and result["done"] is True
    for key in ("val_accuracy", "val_f1", "val_auc", "val_loss", "epoch_seconds", "samples_per_second"):
        assert math.isfinite(result[key]), key
    assert 0 <= result["val_accuracy"] <= 1 and 0 <= result["val_auc"] <= 1
    trainable.stop()


@pytest.mark.slow
def test_smoke_run_end_to_end(ray_session, fixture_dirs, tmp_path):
    results = tmp_path / "results"
    argv = ["--task", "cifar10", "--budget", "smoke", "--data-dir", fixture_dirs["data_dir"], "--cache-dir",
            fixture_dirs["cache_dir"], "--results-dir", str(results), "--methods", "grid,hyperopt",
            "--gpus-per-trial", "0"]  # the test session's Ray declares a GPU that this machine does not have
    assert run_all.main(argv) == 0
    (run_dir,) = (results / "cifar10").iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["searcher"]) == ["grid", "hyperopt"]
    assert summary["test_accuracy"].between(0, 1).all() and summary["test_auc"].between(0, 1).all()
    trials = pd.read_csv(run_dir / "trials.csv")
    assert {"config/dropout_rate", "config/num_epochs"} <= set(trials.columns)
    assert (trials["status"] != "error").all()


@pytest.mark.parametrize("problem, expected", [
    ("missing_file", "has no train.parquet; expected a folder with train.parquet and test.parquet"),
    ("wrong_columns", "lacks column(s) img"),
    ("bad_labels", "has labels outside 0..9 (found 1..12)"),
    ("bad_model", "--model 'vgg11' is not a CIFAR-10 model; allowed: resnet18, efficientnet_b0"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, problem, expected):
    data_dir = write_cifar_folder(tmp_path / "data", per_class_train=2, per_class_test=1)
    model = "resnet18"
    if problem == "missing_file":
        (data_dir / "train.parquet").unlink()
    elif problem == "wrong_columns":
        pq.write_table(pa.table({"image": [b"x"], "label": [0]}), data_dir / "test.parquet")
    elif problem == "bad_labels":
        table = pq.read_table(data_dir / "test.parquet")
        labels = pa.array([12] + table.column("label").to_pylist()[1:])
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels),
                       data_dir / "test.parquet")
    elif problem == "bad_model":
        model = "vgg11"
    results = tmp_path / "results"
    code = run_all.main(["--task", "cifar10", "--budget", "smoke", "--data-dir", str(data_dir), "--model", model,
                         "--results-dir", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not results.exists()


def test_release_hands_the_device_memory_back(fixture_dirs, monkeypatch):
    # every reference to the weights goes (the device images go too) before the cache is emptied
    run = cifar10.Cifar10Run(config(fixture_dirs), cifar10.load_data(config(fixture_dirs)), choose_device())
    weights, alive_at_release = watch_release(monkeypatch, run)
    run.release()
    assert alive_at_release == [False] and weights() is None
