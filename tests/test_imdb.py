"""The IMDB task on tiny offline fixtures: a parquet folder in the hub's schema and a local,
randomly initialized DistilBERT with a WordPiece tokenizer trained in the test session."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ray.tune.trainable.trainable as ray_trainable

import run_all
from tests.memory import watch_release
from tests.text_fixtures import write_imdb_folder, write_tiny_model
from trainables import get_task, imdb
from trainables.base import choose_device


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("imdb")
    return {"data_dir": str(write_imdb_folder(root / "data")), "model": str(write_tiny_model(root / "model")),
            "cache_dir": str(root / "cache"), "root": root}


def config(fixture_dirs, **overrides):
    base = {"data_dir": fixture_dirs["data_dir"], "model": fixture_dirs["model"], "cache_dir": fixture_dirs["cache_dir"],
            "subset": None, "padding": "dynamic", "learning_rate": 1e-3, "batch_size": 8, "num_train_epochs": 2,
            "max_seq_length": 32, "seed": 0}
    return {**base, **overrides}


def test_task_declares_the_design_space():
    task = get_task("imdb")
    assert task.grid_size == 36 and task.max_t == 10 and task.epochs_param == "num_train_epochs"
    assert task.options["model"] == "distilbert-base-uncased"


def test_splits_are_seeded_stratified_and_subset(fixture_dirs):
    data = imdb.load_data(config(fixture_dirs))
    sizes = {split: len(data[split][2]) for split in ("train", "val", "test")}
    assert sizes == {"train": 72, "val": 8, "test": 40}
    assert data["val"][2].mean() == 0.5
    small = imdb.load_data(config(fixture_dirs, subset=10))
    assert {split: len(small[split][2]) for split in ("train", "val", "test")} == {"train": 10, "val": 8, "test": 10}
    assert small["train"][2].mean() == 0.5  # stratified


def test_tokenization_is_cached_on_disk_and_reused(fixture_dirs, monkeypatch):
    cfg = config(fixture_dirs, cache_dir=str(fixture_dirs["root"] / "cache-reuse"), max_seq_length=24)
    first = imdb.load_data(cfg)
    imdb.load_tokenized.cache_clear()  # a new process: only the disk cache is left

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again although the cache holds these reviews")

    monkeypatch.setattr(imdb, "tokenize", no_tokenizing)
    second = imdb.load_data(cfg)
    assert second["cache_path"] == first["cache_path"]
    assert np.array_equal(second["train"][0], first["train"][0])
    # another max_seq_length is another cache entry
    monkeypatch.undo()
    other = imdb.load_data({**cfg, "max_seq_length": 16})
    assert other["cache_path"] != first["cache_path"]
    lengths = np.diff(other["train"][1])
    assert lengths.max() <= 16 and np.diff(first["train"][1]).max() > 16  # truncation at max_seq_length


def test_a_changed_data_file_is_not_served_stale(fixture_dirs, tmp_path):
    data_dir = write_imdb_folder(tmp_path / "data", seed=1)
    cfg = config(fixture_dirs, data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
    before = imdb.load_data(cfg)
    write_imdb_folder(data_dir, seed=2)
    imdb.load_tokenized.cache_clear()
    after = imdb.load_data(cfg)
    assert after["cache_path"] != before["cache_path"]


def test_dynamic_padding_pads_to_the_longest_in_the_batch():
    ids = np.arange(10, dtype=np.int32)
    offsets = np.array([0, 2, 7, 10])  # lengths 2, 5, 3
    input_ids, mask = imdb.pad_batch(ids, offsets, np.array([0, 2]), pad_token_id=0)
    assert input_ids.shape == (2, 3) and mask.sum().item() == 5
    assert input_ids[0].tolist() == [0, 1, 0] and input_ids[1].tolist() == [7, 8, 9]
    fixed, _ = imdb.pad_batch(ids, offsets, np.array([0, 2]), pad_token_id=0, width=8)
    assert fixed.shape == (2, 8)


def test_one_epoch_through_the_trainable(fixture_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_trainable, "DEFAULT_STORAGE_PATH", str(tmp_path))
    trainable = imdb.ImdbTrainable(config=config(fixture_dirs))
    first = trainable.train()
    assert first["epoch"] == 1 and first["done"] is False
    for key in ("val_accuracy", "val_f1", "val_auc", "val_loss", "epoch_seconds", "samples_per_second"):
        assert math.isfinite(first[key]) and first[key] >= 0, key
    second = trainable.train()
    assert second["done"] is True  # num_train_epochs reached
    run = trainable._run
    assert run.scheduler.get_last_lr()[0] == 0.0  # linear decay to zero over all epochs
    trainable.stop()


def test_learning_rate_warms_up_then_decays(fixture_dirs):
    run = imdb.ImdbRun(config(fixture_dirs, num_train_epochs=3), imdb.load_data(config(fixture_dirs)), choose_device())
    rates = []
    for _ in range(27):  # 9 steps per epoch x 3 epochs
        run.optimizer.step()
        run.scheduler.step()
        rates.append(run.scheduler.get_last_lr()[0])
    peak = int(np.argmax(rates))
    assert 0 < peak <= 3 and rates[peak] == pytest.approx(1e-3) and rates[-1] == 0.0


@pytest.mark.slow
def test_smoke_run_end_to_end(ray_session, fixture_dirs, tmp_path):
    results = tmp_path / "results"
    argv = ["--task", "imdb", "--budget", "smoke", "--data-dir", fixture_dirs["data_dir"], "--model",
            fixture_dirs["model"], "--cache-dir", fixture_dirs["cache_dir"], "--results-dir", str(results),
            "--methods", "grid,bayesopt", "--gpus-per-trial", "0"]  # the session's Ray declares a GPU this machine lacks
    assert run_all.main(argv) == 0
    (run_dir,) = (results / "imdb").iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["searcher"]) == ["grid", "bayesopt"]
    assert summary["test_accuracy"].between(0, 1).all() and summary["test_auc"].between(0, 1).all()
    trials = pd.read_csv(run_dir / "trials.csv")
    assert {"config/max_seq_length", "config/num_train_epochs"} <= set(trials.columns)
    assert (trials["status"] != "error").all()


@pytest.mark.parametrize("problem, expected", [
    ("missing_folder", "is not a folder; expected a folder with train.parquet and test.parquet"),
    ("missing_file", "has no test.parquet"),
    ("wrong_columns", "lacks column(s) text"),
    ("bad_labels", "has labels outside 0..1"),
    # offline: "... no network: pass --model with a local folder"; online: "... cannot be loaded ..."
    ("unloadable_model", "--model 'no-such-org/no-such-model'"),
    # names a flag that exists (--model), not one that does not (before: "... or a shorter max_seq_length")
    ("short_model", "max_seq_length 32 is above the limit of model"),
    # the tokenizer and config are there, the weights not: refused before any trial, not once per trial
    ("no_weights", "its weights cannot be loaded"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(fixture_dirs, tmp_path, capsys, problem, expected):
    data_dir, model = tmp_path / "data", fixture_dirs["model"]
    write_imdb_folder(data_dir)
    if problem == "missing_folder":
        data_dir = tmp_path / "nowhere"
    elif problem == "missing_file":
        (data_dir / "test.parquet").unlink()
    elif problem == "wrong_columns":
        pd.DataFrame({"review": ["x"], "label": [0]}).to_parquet(data_dir / "train.parquet")
    elif problem == "bad_labels":
        pd.DataFrame({"text": ["x", "y"], "label": [0, 3]}).to_parquet(data_dir / "test.parquet")
    elif problem == "unloadable_model":
        model = "no-such-org/no-such-model"
    elif problem == "short_model":
        model = str(write_tiny_model(tmp_path / "short", max_position_embeddings=16))
    elif problem == "no_weights":
        folder = write_tiny_model(tmp_path / "weightless")
        for weights in [*folder.glob("*.safetensors"), *folder.glob("*.bin")]:
            weights.unlink()
        model = str(folder)
    results = tmp_path / "results"
    code = run_all.main(["--task", "imdb", "--budget", "smoke", "--data-dir", str(data_dir), "--model", model,
                         "--results-dir", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not results.exists()
    if problem == "short_model":
        assert "pass a --model with at least 32 positions" in err[0] and "shorter max_seq_length" not in err[0]


def test_training_batches_are_length_grouped_and_padded_less_than_fixed(fixture_dirs, monkeypatch):
    widths = {"dynamic": [], "max_length": []}
    real_pad_batch = imdb.pad_batch

    def recording(ids, offsets, rows, pad_token_id, width=None):
        input_ids, mask = real_pad_batch(ids, offsets, rows, pad_token_id, width)
        widths[current].append(input_ids.numel())
        return input_ids, mask

    monkeypatch.setattr(imdb, "pad_batch", recording)
    data = imdb.load_data(config(fixture_dirs, max_seq_length=48))
    for current in ("dynamic", "max_length"):
        run = imdb.ImdbRun(config(fixture_dirs, padding=current, max_seq_length=48), data, choose_device())
        run.train_epoch()
    real_tokens = int(np.diff(data["train"][1]).sum())
    assert sum(widths["max_length"]) == 72 * 48  # every review padded to max_seq_length
    assert real_tokens <= sum(widths["dynamic"]) < sum(widths["max_length"])


def test_release_hands_the_device_memory_back(fixture_dirs, monkeypatch):
    # every reference to the weights goes (the learning-rate schedule holds the optimizer) before the cache is emptied
    run = imdb.ImdbRun(config(fixture_dirs), imdb.load_data(config(fixture_dirs)), choose_device())
    weights, alive_at_release = watch_release(monkeypatch, run)
    run.release()
    assert alive_at_release == [False] and weights() is None


def test_a_half_precision_checkpoint_trains_with_fp32_weights(fixture_dirs, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    half = tmp_path / "bf16-model"
    model = AutoModelForSequenceClassification.from_pretrained(fixture_dirs["model"], num_labels=2).to(torch.bfloat16)
    model.save_pretrained(half)
    AutoTokenizer.from_pretrained(fixture_dirs["model"]).save_pretrained(half)
    run = imdb.ImdbRun(config(fixture_dirs, model=str(half)), imdb.load_data(config(fixture_dirs)), choose_device())
    assert {p.dtype for p in run.model.parameters()} == {torch.float32}  # master weights; autocast does bf16 on CUDA
    run.release()


def test_the_token_cache_is_filled_once_before_any_trial(fixture_dirs, tmp_path):
    task = get_task("imdb").for_budget("smoke")
    options = {**task.options, "data_dir": fixture_dirs["data_dir"], "model": fixture_dirs["model"],
               "cache_dir": str(tmp_path / "cache")}
    task.prepare(options, {**task.space, "max_seq_length": (32, 48)})
    assert len(list((tmp_path / "cache" / "imdb").glob("*.npz"))) == 2  # one per max_seq_length of the space


def test_the_padding_mask_costs_no_wait_for_the_card_and_changes_no_logit(fixture_dirs, monkeypatch):
    """transformers reads a 2D mask's ``.all()`` as a Python bool on every forward (a wait for the card when the
    mask is on it). The mask is decided on the host instead: none without padding, the 4D form SDPA gets
    otherwise; either way the logits are the 2D mask's, and transformers' check is never reached."""
    import torch
    import transformers.masking_utils as masking

    run = imdb.ImdbRun(config(fixture_dirs), imdb.load_data(config(fixture_dirs)), choose_device())
    model = run.model.eval()
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(5, 100, (3, 12))
    padded = torch.ones(3, 12, dtype=torch.int64)
    padded[1, 7:] = 0
    padded[2, 3:] = 0
    checks = []
    real = masking._ignore_bidirectional_mask_sdpa
    # a call with a padding mask is the wait (its .all()); with None there is nothing to read
    monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa",
                        lambda mask, *a, **k: checks.append(mask is not None) or real(mask, *a, **k))
    with torch.no_grad():
        for mask in (padded, torch.ones(3, 12, dtype=torch.int64)):
            prepared = imdb.attention_mask_for(model, mask)
            expected = model(input_ids=ids, attention_mask=mask).logits
            assert checks == [True]  # the 2D mask: transformers reads it
            checks.clear()
            got = model(input_ids=ids, attention_mask=prepared).logits
            assert not any(checks)  # the prepared one: nothing read
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert imdb.attention_mask_for(model, torch.ones(2, 4, dtype=torch.int64)) is None
    assert imdb.attention_mask_for(model, padded).shape == (3, 1, 1, 12)
