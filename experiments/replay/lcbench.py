"""YAHPO Gym's LCBench surrogate (34 OpenML data sets, a funnel-shaped MLP, 1..52 epochs), read
with onnxruntime.

Our own reader because the ``yahpo-gym`` package pins ``numpy<2`` and ``ConfigSpace<=0.6.1``,
which this project's stack cannot take. It reproduces exactly what yahpo-gym 1.0.2 does for
``lcbench`` (``BenchmarkSet._config_to_xs`` and ``objective_function``): the data set's integer
code from ``encoding.json`` as ``x_cat`` (int32, (n, 1)), the raw hyperparameter values in
``CONT_NAMES`` order as ``x_cont`` (float32, (n, 8)), and the six outputs in ``Y_NAMES`` order,
unscaled (the scaling lives inside the ONNX graph). tests/test_lcbench.py checks it against
values yahpo-gym itself computed. Units: ``time`` is seconds of training up to that epoch,
``val_accuracy`` is in percent, the balanced accuracies are fractions.

The files ship in ``experiments/replay/data/yahpo-lcbench/`` (Apache-2.0, license included).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

SURROGATE_DIR = Path(__file__).resolve().parent / "data" / "yahpo-lcbench"
CONT_NAMES = ("epoch", "batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units",
              "max_dropout")
Y_NAMES = ("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy", "test_cross_entropy",
           "test_balanced_accuracy")
MAX_EPOCHS = 52  # the surrogate's epochs: 1..52
# The epochs a table holds. YAHPO Gym's FAQ ("lcbench and epochs"): "the first epoch in the LCBench
# data refers to the models only being initialized (i.e., not trained) ... it is therefore best to
# exclude this first epoch for learning curve purposes or when doing multi-fidelity HPO ... the last
# epoch mostly contains exactly the same performance metrics as the penultimate epoch ... a sensible
# epoch range ... is 2 to 51." (Syne Tune's LCBench import and DyHPO's loader drop the same two.)
# With YAHPO epoch 1 in the table, ASHA's first rung ranked untrained networks: the rank correlation
# of that rung with a curve's best was 0.16 over the 34 data sets, against 0.72 at YAHPO epoch 2.
# So a table's epoch e is YAHPO's epoch e + 1, e = 1..50.
YAHPO_EPOCHS = tuple(range(2, 52))


class Surrogate:
    def __init__(self, folder: Path = SURROGATE_DIR, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # replays run in parallel processes: one thread each
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(Path(folder) / "model.onnx"), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._codes = json.loads((Path(folder) / "encoding.json").read_text())["OpenML_task_id"]
        self._space = json.loads((Path(folder) / "config_space.json").read_text())

    @cached_property
    def tasks(self) -> list[str]:
        """The 34 OpenML task ids of the benchmark (the config space's choices)."""
        (task,) = [h for h in self._space["hyperparameters"] if h["name"] == "OpenML_task_id"]
        return list(task["choices"])

    def bounds(self, name: str) -> tuple[float, float, bool]:
        """(lower, upper, log scale) of a hyperparameter of the space."""
        (h,) = [h for h in self._space["hyperparameters"] if h["name"] == name]
        return h["lower"], h["upper"], bool(h.get("log"))

    def predict(self, task: str, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for rows ``x`` (n, 8) in CONT_NAMES order on data set ``task``."""
        if task not in self.tasks:
            raise ValueError(f"unknown LCBench task {task!r}; known: {', '.join(self.tasks)}")
        x_cont = np.asarray(x, dtype=np.float32).reshape(-1, len(CONT_NAMES))
        x_cat = np.full((len(x_cont), 1), self._codes[task], dtype=np.int32)
        (out,) = self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})
        return {name: out[:, i].astype(np.float64) for i, name in enumerate(Y_NAMES)}


# --- replay tables from the surrogate --------------------------------------------------------
# The grid, declared before any table was looked at: value lists over LCBench's space (log-spaced
# where the space is log-scaled), as our tasks declare theirs. The epoch count is the resource
# (every configuration's curve runs 1..50, YAHPO's 2..51), not a searched value. 3*4*3*3*3*3*2 = 1,944.
GRID = {
    "batch_size": (16, 64, 256),  # log range 16..512
    "learning_rate": (1e-4, 1e-3, 1e-2, 1e-1),  # log range 1e-4..1e-1
    "momentum": (0.1, 0.5, 0.9),  # range 0.1..0.99
    "weight_decay": (1e-5, 1e-3, 1e-1),  # range 1e-5..1e-1
    "num_layers": (1, 3, 5),  # range 1..5
    "max_units": (64, 256, 1024),  # log range 64..1024
    "max_dropout": (0.0, 0.5),  # range 0..1
    "epochs": (len(YAHPO_EPOCHS),),  # the resource ASHA allocates
}
# ASHA on these tables: the LCBench setting of the multi-fidelity literature (Syne Tune's and
# HPOBench's benchmarks), declared with the grid, not measured: first rung after 1 epoch, keep 1/3.
GRACE_PERIOD, REDUCTION_FACTOR = 1, 3
MIN_EPOCH_SECONDS = 1e-3  # floor of an epoch's time: the surrogate's cumulative time is not always increasing


def grid_rows() -> np.ndarray:
    """Every grid configuration as CONT_NAMES rows without the epoch: (1944, 7)."""
    import itertools

    names = [n for n in CONT_NAMES if n != "epoch"]
    return np.array(list(itertools.product(*(GRID[n] for n in names))), dtype=np.float64)


def curves(surrogate: Surrogate, task: str, configs: np.ndarray,
           yahpo_epochs: tuple[int, ...] = YAHPO_EPOCHS) -> dict[str, np.ndarray]:
    """(n configs, len(yahpo_epochs)) arrays, column e-1 = YAHPO epoch ``yahpo_epochs[e-1]``:
    val_accuracy and test_accuracy as fractions (test: the surrogate's balanced test accuracy, the
    only test accuracy it predicts), val_loss, and epoch_seconds from its cumulative time (an
    epoch's seconds: the cumulative time at it less at the YAHPO epoch before it, as before the
    first epoch was dropped)."""
    n = len(configs)
    every = np.arange(1, MAX_EPOCHS + 1)
    x = np.column_stack([np.repeat(every, n), np.tile(configs, (MAX_EPOCHS, 1))])
    out = {k: v.reshape(MAX_EPOCHS, n).T for k, v in surrogate.predict(task, x).items()}
    cumulative = np.maximum.accumulate(np.maximum(out["time"], 0.0), axis=1)
    seconds = np.diff(cumulative, axis=1, prepend=0.0)
    keep = np.asarray(yahpo_epochs) - 1
    return {"val_accuracy": np.clip(out["val_accuracy"][:, keep] / 100.0, 0.0, 1.0),
            "test_accuracy": np.clip(out["test_balanced_accuracy"][:, keep], 0.0, 1.0),
            "val_loss": out["val_cross_entropy"][:, keep],
            "epoch_seconds": np.maximum(seconds[:, keep], MIN_EPOCH_SECONDS)}


def write_table(surrogate: Surrogate, task: str, folder: Path, max_concurrent: int = 4,
                yahpo_epochs: tuple[int, ...] = YAHPO_EPOCHS) -> Path:
    """A replay table (run.json, trials.csv, curves.csv.gz: the format load_table reads) of the
    whole grid on one data set. Deterministic: the surrogate is. ``yahpo_epochs`` other than the
    default only for the test that the fidelity check flags a table with the untrained epoch."""
    import gzip

    import pandas as pd

    from core import records

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    configs = grid_rows()
    c = curves(surrogate, task, configs, yahpo_epochs)
    epochs = len(yahpo_epochs)
    names = [n for n in CONT_NAMES if n != "epoch"]
    space = {**{n: list(GRID[n]) for n in names}, "epochs": [epochs]}
    identity = {"task": f"lcbench-{task}", "searcher": "grid", "scheduler": "fifo", "seed": 0}
    trials = pd.DataFrame({**identity, "trial_id": [f"c{i:04d}" for i in range(len(configs))],
                           "status": records.COMPLETED, **{f"config/{n}": configs[:, j] for j, n in enumerate(names)},
                           "config/epochs": epochs, "epochs": epochs,
                           "best_val_accuracy": c["val_accuracy"].max(axis=1)})
    epoch_rows = pd.DataFrame({**identity, "trial_id": np.repeat(trials["trial_id"].to_numpy(), epochs),
                               "epoch": np.tile(np.arange(1, epochs + 1), len(configs)),
                               **{k: v.ravel() for k, v in c.items()}})
    records.write_csv(folder / "trials.csv", list(trials.columns), trials.to_dict("records"))
    with gzip.open(folder / "curves.csv.gz.tmp", "wt", newline="") as f:
        epoch_rows.to_csv(f, index=False)
    (folder / "curves.csv.gz.tmp").replace(folder / "curves.csv.gz")
    records.write_json(folder / "run.json", {
        "spec": {"task": f"lcbench-{task}", "budget": "full"},
        "resolved": {"space": space, "epochs_param": "epochs", "metric": "val_accuracy", "mode": "max",
                     "grace_period": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR,
                     "max_concurrent": max_concurrent, "num_samples": len(configs)},
        "source": "YAHPO Gym LCBench surrogate (experiments/replay/data/yahpo-lcbench), OpenML task " + task,
        "yahpo_epochs": [yahpo_epochs[0], yahpo_epochs[-1]],  # table epoch 1 = YAHPO epoch yahpo_epochs[0]
    })
    return folder


def random_sample_best(surrogate: Surrogate, task: str, n: int, seed: int = 0) -> float:
    """The best validation accuracy (within the table's epochs) among ``n`` configurations drawn
    uniformly from LCBench's continuous space (log-uniform where it is log-scaled)."""
    rng = np.random.default_rng([seed, int(task)])
    columns = []
    for name in (n for n in CONT_NAMES if n != "epoch"):
        low, high, log = surrogate.bounds(name)
        draw = np.exp(rng.uniform(np.log(low), np.log(high), n)) if log else rng.uniform(low, high, n)
        columns.append(np.round(draw) if name in ("batch_size", "num_layers", "max_units") else draw)
    return float(curves(surrogate, task, np.column_stack(columns))["val_accuracy"].max())
