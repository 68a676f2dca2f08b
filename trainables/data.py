"""Data loading shared by the tasks that read Hugging Face data sets (imdb, cifar10).

One loader serves both sources through the ``datasets`` library: the hub's copy when online,
or a local folder holding ``train.parquet`` and ``test.parquet`` in the hub's schema. The
validation split is carved from the training split with a fixed seed; the test split is used
only to score the configurations the methods select.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

SPLIT_SEED = 0  # validation split and subsets: the same for every run seed
SPLIT_FILES = ("train.parquet", "test.parquet")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lowres-tune"


def check_parquet_folder(data_dir: str, columns: dict[str, str], num_labels: int) -> None:
    """ValueError with one line saying what was expected, unless ``data_dir`` holds both split
    files with ``columns`` ({name: description}) and integer labels in 0..num_labels-1."""
    import pyarrow.parquet as pq

    folder = Path(data_dir)
    expected = f"a folder with {' and '.join(SPLIT_FILES)} (columns: {', '.join(columns)})"
    if not folder.is_dir():
        raise ValueError(f"--data-dir {data_dir!r} is not a folder; expected {expected}")
    for name in SPLIT_FILES:
        path = folder / name
        if not path.is_file():
            raise ValueError(f"--data-dir {data_dir!r} has no {name}; expected {expected}")
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise ValueError(f"{path} is not a readable parquet file ({type(exc).__name__}); expected {expected}") from None
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"{path} lacks column(s) {', '.join(missing)} (has {', '.join(schema.names)}); "
                             f"expected {', '.join(f'{c} ({d})' for c, d in columns.items())}")
        labels = pq.read_table(path, columns=["label"]).column("label").to_numpy()
        if len(labels) == 0:
            raise ValueError(f"{path} has no rows")
        if labels.min() < 0 or labels.max() >= num_labels:
            raise ValueError(f"{path} has labels outside 0..{num_labels - 1} "
                             f"(found {int(labels.min())}..{int(labels.max())})")


def load_splits(hub_name: str, data_dir: str | None):
    """{"train": Dataset, "test": Dataset} from a local parquet folder or the hub."""
    import datasets

    datasets.disable_progress_bars()
    if data_dir:
        files = {split: str(Path(data_dir) / f"{split}.parquet") for split in ("train", "test")}
        loaded = datasets.load_dataset("parquet", data_files=files)
    else:
        try:
            loaded = datasets.load_dataset(hub_name)
        except Exception as exc:  # no network, or the hub refuses: say how to work offline
            raise RuntimeError(f"cannot load {hub_name} from the Hugging Face hub ({type(exc).__name__}); "
                               "pass --data-dir with a folder holding train.parquet and test.parquet") from exc
    return {"train": loaded["train"], "test": loaded["test"]}


def source_fingerprint(hub_name: str, data_dir: str | None) -> dict:
    """What identifies the data source in a cache key: the hub name, or each local file's
    resolved path, size and modification time (a changed file is never served stale)."""
    if not data_dir:
        return {"hub": hub_name}
    files = {}
    for name in SPLIT_FILES:
        stat = (Path(data_dir) / name).resolve().stat()
        files[name] = [str((Path(data_dir) / name).resolve()), stat.st_size, stat.st_mtime_ns]
    return {"files": files}


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def stratified_take(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` examples with the label proportions of ``labels`` (all if n is None)."""
    indices = np.arange(len(labels))
    if n is None or n >= len(labels):
        return indices
    from sklearn.model_selection import train_test_split

    taken, _ = train_test_split(indices, train_size=n, stratify=labels, random_state=seed)
    return np.sort(taken)


def split_indices(train_labels: Sequence[int], test_labels: Sequence[int], val_size: int | float,
                  subset: int | None, eval_subset: int | None = None) -> dict[str, tuple[str, np.ndarray]]:
    """{split: (source split, indices)}: a seeded stratified validation split carved from the
    training split, then ``subset`` stratified training examples and ``eval_subset`` (default:
    ``subset``) stratified examples of validation and test."""
    eval_subset = subset if eval_subset is None else eval_subset
    from sklearn.model_selection import train_test_split

    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    train_idx, val_idx = train_test_split(np.arange(len(train_labels)), test_size=val_size,
                                          stratify=train_labels, random_state=SPLIT_SEED)
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    chosen = {
        "train": ("train", train_idx[stratified_take(train_labels[train_idx], subset, SPLIT_SEED)]),
        "val": ("train", val_idx[stratified_take(train_labels[val_idx], eval_subset, SPLIT_SEED)]),
        "test": ("test", stratified_take(test_labels, eval_subset, SPLIT_SEED)),
    }
    return chosen


def hub_reachable(timeout_s: float = 5.0) -> bool:
    """Whether the Hugging Face hub's host resolves and accepts a connection. Checked before
    an online load so that an offline machine gets its clear error at once, not after the
    libraries' retries (about 30 s)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False
