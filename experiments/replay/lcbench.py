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
MAX_EPOCHS = 52


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
