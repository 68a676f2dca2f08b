"""IMDB sentiment (2 classes) by fine-tuning a Hugging Face sequence-classification model.

Data: the hub's ``stanfordnlp/imdb``, or ``--data-dir`` with ``train.parquet`` and
``test.parquet`` (``text``, ``label``). A seeded, stratified validation split of
``VAL_SIZE`` reviews is carved from train; ``--subset N`` takes N stratified reviews of each
split. Model: ``--model``, a hub name (default ``distilbert-base-uncased``) or a local folder.

Tokenization happens once per (data, tokenizer, max_seq_length, subset): batched with the fast
tokenizer, truncated at ``max_seq_length``, unpadded, and cached on disk (``--cache-dir``);
every trial and run after the first loads the token ids from the cache. Batches are padded
to their own longest review (dynamic padding), not to ``max_seq_length``, and are drawn
length-grouped (transformers' ``get_length_grouped_indices``, as ``Trainer(group_by_length=True)``:
random mega-batches of 50 batches, sorted by length inside), so that little padding is left.

Training is a plain PyTorch loop rather than Hugging Face ``Trainer``: one Tune step is one
epoch, and the loop is the same code the throughput benchmark compares against a hand-written
loop. AdamW with linear warmup (10% of all steps) and linear decay over ``num_train_epochs``,
gradient clipping at norm 1.0, bf16 autocast on a card that computes it natively (fp16 with
a gradient scaler on older ones; core.rules.training_precision).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from trainables import data as data_lib

try:
    from transformers.trainer_pt_utils import get_length_grouped_indices
except ImportError:  # pragma: no cover - transformers is a dependency; the error names the fix
    raise ImportError("the imdb task needs transformers: pip install transformers") from None
from core.task import TaskSpec
from trainables.base import EpochTrainable, MixedPrecision, TrainingRun

HUB_DATASET = "stanfordnlp/imdb"
DEFAULT_MODEL = "distilbert-base-uncased"
VAL_SIZE = 0.1  # share of the training reviews carved out for validation (2,500 of 25,000)
NUM_LABELS = 2
WARMUP_FRACTION = 0.1  # of all optimizer steps: linear warmup, then linear decay to 0
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.01
EVAL_BATCH_SIZE = 64  # reviews per evaluation batch, sorted by length

# The grid (docs/DESIGN.md): 3 x 2 x 3 x 2 = 36 configurations.
SPACE = {
    "learning_rate": (1e-5, 5e-5, 1e-4),  # AdamW peak step size
    "batch_size": (16, 32),  # reviews per step
    "num_train_epochs": (3, 5, 10),  # epochs; also ASHA's resource
    "max_seq_length": (128, 256),  # tokens kept per review
}
SMOKE_SPACE = {"learning_rate": (5e-5, 1e-4), "batch_size": (8,), "num_train_epochs": (1, 2), "max_seq_length": (32,)}

OPTIONS = {
    "data_dir": None,  # None: the hub's stanfordnlp/imdb
    "model": DEFAULT_MODEL,  # hub name or local folder
    "subset": None,  # N stratified reviews of each split
    "cache_dir": None,  # None: ~/.cache/lowres-tune
    # "dynamic": length-grouped batches padded to their longest review; "max_length": random
    # batches padded to max_seq_length (the baseline the throughput benchmark compares against)
    "padding": "dynamic",
}


def _is_local(model: str) -> bool:
    return Path(model).is_dir()


def load_pretrained(loader, model: str, **kwargs):
    """``loader.from_pretrained(model)`` from a local folder, the local hub cache, or the hub,
    with a clear error where none of them has it."""
    if _is_local(model):
        return loader.from_pretrained(model, **kwargs)
    try:
        return loader.from_pretrained(model, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not data_lib.hub_reachable():
        raise ValueError(f"--model {model!r} is not a local folder or in the Hugging Face cache, and there is no "
                         "network: pass --model with a local folder")
    try:
        return loader.from_pretrained(model, **kwargs)
    except OSError as exc:
        raise ValueError(f"--model {model!r} cannot be loaded ({str(exc).splitlines()[0]}); pass a Hugging Face "
                         "model name or a local folder") from None


def _check_weights(model: str) -> None:
    """The model's weights, loaded (or fetched, online) once in the driver before any trial: a cache
    holding the tokenizer and config but not the weights otherwise fails every trial, one by one."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the new classification head is expected
    try:
        load_pretrained(AutoModelForSequenceClassification, model, num_labels=NUM_LABELS)
    except (OSError, EnvironmentError) as exc:
        raise ValueError(f"--model {model!r}: its weights cannot be loaded ({str(exc).splitlines()[0]}); the "
                         "tokenizer and config alone are not enough") from None


def check_options(options: dict, task: TaskSpec) -> None:
    if options["padding"] not in ("dynamic", "max_length"):
        raise ValueError(f"padding must be 'dynamic' or 'max_length', got {options['padding']!r}")
    if options["data_dir"]:
        data_lib.check_parquet_folder(options["data_dir"], {"text": "string", "label": "int"}, NUM_LABELS)
    elif not data_lib.hub_reachable():
        raise ValueError(f"no network to load {HUB_DATASET} from the Hugging Face hub: pass --data-dir with a "
                         "folder holding train.parquet and test.parquet (text, label)")
    from transformers import AutoConfig, AutoTokenizer

    config = load_pretrained(AutoConfig, options["model"])
    load_pretrained(AutoTokenizer, options["model"])
    _check_weights(options["model"])
    limit = getattr(config, "max_position_embeddings", None)
    longest = max(task.space["max_seq_length"])
    if limit is not None and longest > limit:
        raise ValueError(f"max_seq_length {longest} is above the limit of model {options['model']!r} ({limit} "
                         f"positions); pass a --model with at least {longest} positions (max_seq_length is a "
                         "searched hyperparameter of this task's space, not a command-line option)")


def _tokenizer_fingerprint(tokenizer) -> str:
    return data_lib.cache_key(tokenizer.backend_tokenizer.to_str())


def tokenize(tokenizer, texts: list[str], max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fast, batched tokenization without padding: (flat token ids, offsets of each review)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_seq_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((t for ids in encoded for t in ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


@lru_cache(maxsize=2)
def load_tokenized(data_dir: str | None, model: str, subset: int | None, max_seq_length: int,
                   cache_dir: str | None) -> dict:
    """{split: (flat ids, offsets, labels)} plus ``pad_token_id``, from the disk cache or by
    tokenizing once and writing the cache."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer, model, use_fast=True)
    key = data_lib.cache_key("imdb", data_lib.source_fingerprint(HUB_DATASET, data_dir), _tokenizer_fingerprint(tokenizer),
                             max_seq_length, subset, VAL_SIZE, data_lib.SPLIT_SEED)
    path = Path(cache_dir or data_lib.default_cache_dir()) / "imdb" / f"{key}.npz"
    if not path.exists():
        splits = data_lib.load_splits(HUB_DATASET, data_dir)
        chosen = data_lib.split_indices(list(splits["train"]["label"]), list(splits["test"]["label"]), VAL_SIZE, subset)
        arrays = {}
        for split, (source, indices) in chosen.items():
            rows = splits[source].select(indices)
            flat, offsets = tokenize(tokenizer, list(rows["text"]), max_seq_length)
            arrays.update({f"{split}_ids": flat, f"{split}_offsets": offsets,
                           f"{split}_labels": np.asarray(list(rows["label"]), dtype=np.int64)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: trials tokenizing at once never read half a file
    with np.load(path) as cached:
        result = {split: (cached[f"{split}_ids"], cached[f"{split}_offsets"], cached[f"{split}_labels"])
                  for split in ("train", "val", "test")}
    result["pad_token_id"] = int(tokenizer.pad_token_id or 0)
    result["cache_path"] = str(path)
    return result


def load_data(config) -> dict:
    return load_tokenized(config.get("data_dir"), config.get("model", DEFAULT_MODEL), config.get("subset"),
                          int(config["max_seq_length"]), config.get("cache_dir"))


def prepare(options, space) -> None:
    """Tokenize once per max_seq_length of the space, in the driver, before trials start."""
    for max_seq_length in space["max_seq_length"]:
        load_tokenized(options.get("data_dir"), options.get("model", DEFAULT_MODEL), options.get("subset"),
                       int(max_seq_length), options.get("cache_dir"))


def pad_batch(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray, pad_token_id: int,
              width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of the reviews ``rows``, padded to the longest of them, or to
    ``width`` where given (fixed padding)."""
    starts, ends = offsets[rows], offsets[rows + 1]
    longest = int((ends - starts).max())
    width = longest if width is None else max(width, longest)
    input_ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (start, end) in enumerate(zip(starts, ends)):
        input_ids[i, :end - start] = ids[start:end]
        mask[i, :end - start] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def attention_mask_for(model, mask: torch.Tensor) -> torch.Tensor | None:
    """The padding mask (host memory, 2D) in the form that costs no wait for the GPU. Given a 2D mask,
    transformers checks on every forward whether any token is masked (``masking_utils``:
    ``padding_mask.all()`` read as a Python bool): with the mask on the card that waits for the card to
    finish, so the host cannot queue the next batch ahead. Decided here on the host instead: no padding in
    the batch, no mask (nothing to mask; SDPA may then take its flash kernel); for SDPA, the 4D boolean mask
    transformers would build from it (a 4D mask is used as given, unchecked); other attention
    implementations get the 2D mask as before."""
    if bool(mask.all()):
        return None
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        return mask.bool()[:, None, None, :]
    return mask


class ImdbRun(TrainingRun):
    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # "some weights are newly initialized": the head, by design
        hf_logging.disable_progress_bar()
        # fp32 master weights whatever dtype the checkpoint was saved in (transformers 5 loads the
        # saved dtype: a bf16 checkpoint would train in bf16 without master weights); the forward
        # passes run in bf16 under autocast on CUDA.
        self.model = load_pretrained(AutoModelForSequenceClassification, config.get("model", DEFAULT_MODEL),
                                     num_labels=NUM_LABELS).to(device=device, dtype=torch.float32)
        self.batch_size = int(config["batch_size"])
        self.fixed_width = int(config["max_seq_length"]) if config.get("padding") == "max_length" else None
        self.n_train = len(data["train"][2])
        steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        total_steps = steps_per_epoch * int(config["num_train_epochs"])
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(config["learning_rate"]),
                                           weight_decay=WEIGHT_DECAY, fused=device.type == "cuda" or None)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(WARMUP_FRACTION * total_steps),
                                                         total_steps)
        self.generator = torch.Generator().manual_seed(int(config.get("seed", 0)))
        self.precision = MixedPrecision(device)  # bf16 where native, else fp16 with a scaler; none on the CPU
        self.autocast = self.precision.autocast

    def _batch(self, split: str, rows: np.ndarray, width=None):
        ids, offsets, labels = self.data[split]
        input_ids, mask = pad_batch(ids, offsets, rows, self.data["pad_token_id"], width)
        mask = attention_mask_for(self.model, mask)
        host = (input_ids, mask, torch.from_numpy(labels[rows]))
        if self.device.type == "cuda":  # pinned: the copy is asynchronous (non_blocking) only from pinned memory
            host = tuple(None if t is None else t.pin_memory() for t in host)
        return tuple(None if t is None else t.to(self.device, non_blocking=True) for t in host)

    def train_epoch(self) -> float:
        self.model.train()
        if self.fixed_width is None:
            lengths = np.diff(self.data["train"][1]).tolist()
            order = np.asarray(get_length_grouped_indices(lengths, self.batch_size, generator=self.generator))
        else:
            order = torch.randperm(self.n_train, generator=self.generator).numpy()
        total = torch.zeros((), device=self.device)
        for start in range(0, self.n_train, self.batch_size):
            rows = order[start:start + self.batch_size]
            input_ids, mask, labels = self._batch("train", rows, self.fixed_width)
            with self.autocast:
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.step(loss, self.optimizer, MAX_GRAD_NORM, self.model.parameters())
            self.scheduler.step()
            total += loss.detach() * len(rows)
        return float(total) / self.n_train

    @torch.no_grad()
    def predict(self, split):
        self.model.eval()
        ids, offsets, labels = self.data[split]
        by_length = np.argsort(np.diff(offsets), kind="stable")  # little padding in each batch
        proba = np.empty(len(labels), dtype=np.float64)
        loss_sum = 0.0
        for start in range(0, len(labels), EVAL_BATCH_SIZE):
            rows = by_length[start:start + EVAL_BATCH_SIZE]
            input_ids, mask, y = self._batch(split, rows)
            with self.autocast:
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            proba[rows] = torch.softmax(logits, dim=1)[:, 1].cpu().numpy()
        return labels, proba, loss_sum / len(labels)

    def state_dict(self):
        return {**super().state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.scheduler.load_state_dict(state["scheduler"])

    def release(self):
        self.scheduler = None  # it holds the optimizer, and through it the weights and Adam's moments
        super().release()


TASK = TaskSpec(
    name="imdb",
    num_classes=NUM_LABELS,
    trainable="trainables.imdb:ImdbTrainable",
    space=SPACE,
    epochs_param="num_train_epochs",
    grace_period=1,  # epochs, declared with the space (not measured): rungs at 1 and 3 of max 10, two cuts
    reduction_factor=3,
    cpus_per_trial=1.0,
    gpus_per_trial=0.25,  # four DistilBERT trials share one GPU
    memory_params=("batch_size", "max_seq_length"),
    # a few batches, each padded to max_seq_length: dynamic padding's longest batch, at once
    probe_options={"subset": 96, "padding": "max_length"},
    smoke_space=SMOKE_SPACE,
    smoke_grace_period=1,
    smoke_num_samples=2,
    smoke_options={"subset": 200},  # a CPU-sized first look: 200 stratified reviews of each split
    options=OPTIONS,
    check_options=check_options,
    prepare=prepare,
    description="IMDB reviews, fine-tuned Hugging Face sequence classifier (DistilBERT)",
)


class ImdbTrainable(EpochTrainable):
    task = TASK
    run_cls = ImdbRun
    load_data = staticmethod(load_data)
    data_keys = ("data_dir", "model", "subset", "max_seq_length", "cache_dir")
