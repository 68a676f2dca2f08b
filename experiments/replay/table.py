"""A recorded grid run as a replay table: every configuration's learning curve (one per
training seed), the grid's optimum and compute, and one-line errors for folders that cannot
be replayed."""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.records import COMPLETED, FAILED
from core.rules import Objective, best_epochs, method_label, select_trial
from core.task import TaskSpec


class ReplayError(ValueError):
    """The table cannot be replayed; the message is one line saying what is missing."""


# --- the recorded table --------------------------------------------------------------------
@dataclass
class Curve:
    """One configuration trained with one training seed: per-epoch arrays (index 0 = epoch 1)."""

    seed: int
    val: dict[str, np.ndarray]  # val_<name> for each metric the run recorded (val_accuracy, ...)
    epoch_seconds: np.ndarray
    test: dict[str, np.ndarray] | None  # test_* where the run recorded them
    objective: Objective  # the table's metric and direction

    @functools.cached_property
    def best_epoch(self) -> np.ndarray:
        """best_epoch[e-1]: the epoch (1-based) whose weights a trial that trained e epochs
        keeps (core.rules.best_epochs, the rule EpochTrainable applies)."""
        return np.asarray(best_epochs(self.val[self.objective.metric], self.objective), dtype=int)

    @functools.cached_property
    def running_best(self) -> np.ndarray:
        """running_best[e-1]: the best value of the metric within e epochs (the weights kept)."""
        values = self.val[self.objective.metric]
        return (np.maximum if self.objective.mode == "max" else np.minimum).accumulate(values)


@dataclass
class Table:
    """A grid run's learning curves, keyed by configuration, with the run's settings."""

    task: str
    space: dict[str, list]  # hyperparameter -> its grid values
    epochs_param: str
    metric: str
    mode: str
    grace_period: int
    reduction_factor: int
    max_concurrent: int
    num_samples: int
    curves: dict[tuple, list[Curve]]  # configuration key -> one curve per training seed
    source: str = ""
    budget: str = "full"  # the recorded run's budget (smoke or full)
    _value: dict = field(default_factory=dict, repr=False)

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.mode)

    def key(self, config: dict) -> tuple:
        """A configuration's key: its value of every hyperparameter, as in the space."""
        return _key(self.space, config)

    def config_of(self, key: tuple) -> dict:
        return dict(zip(self.space, key))

    def task_spec(self) -> TaskSpec:
        """A TaskSpec of the table's space and ASHA settings, for the searcher factories (with
        no trainable: a replayed trial runs nothing)."""
        metrics = next(iter(self.curves.values()))[0].val  # val_<name>: what the recorded run evaluated
        return TaskSpec(name=self.task, space={k: tuple(v) for k, v in self.space.items()},
                        metric=self.metric, mode=self.mode, metrics=tuple(m.removeprefix("val_") for m in metrics),
                        epochs_param=self.epochs_param,
                        grace_period=self.grace_period, reduction_factor=self.reduction_factor)

    def value(self, key: tuple, epochs: int) -> float:
        """A model's worth: mean over training seeds of the best validation value within
        ``epochs`` epochs (the weights a trial keeps)."""
        cached = self._value.get(key)
        if cached is None:
            cached = np.mean([c.running_best for c in self.curves[key]], axis=0)
            self._value[key] = cached
        return float(cached[epochs - 1])

    @functools.cached_property
    def _final_values(self) -> list[float]:
        """Every configuration's value trained to its own epoch count."""
        return [self.value(key, len(curves[0].epoch_seconds)) for key, curves in self.curves.items()]

    @functools.cached_property
    def optimum(self) -> float:
        """The grid's best value (every configuration trained to its own epoch count)."""
        return self.objective.best(self._final_values)

    @functools.cached_property
    def worst_value(self) -> float:
        """The value of the grid's worst configuration (each trained to its own epoch count)."""
        return (min if self.objective.mode == "max" else max)(self._final_values)

    @functools.cached_property
    def median_value(self) -> float:
        """The value of the grid's median configuration (each trained to its own epoch count):
        the 1 of normalized regret."""
        return float(np.median(self._final_values))

    @functools.cached_property
    def grid_compute(self) -> float:
        """Seconds of the whole grid: every configuration's epochs, mean over training seeds."""
        return float(sum(np.mean([c.epoch_seconds.sum() for c in curves]) for curves in self.curves.values()))

    @property
    def has_test(self) -> bool:
        return all(c.test is not None for curves in self.curves.values() for c in curves)

    def grid_selection_test(self) -> float | None:
        """The test value of the metric (test accuracy for val_accuracy) of the grid's own pick
        (core.rules.select_trial over the grid in the table's order), mean over training seeds."""
        if not self.has_test:
            return None
        objective, values = self.objective, []
        for i in range(len(next(iter(self.curves.values())))):
            rows = [{"key": key, "status": COMPLETED, objective.best_column: float(curves[i].running_best[-1]),
                     "epochs": len(curves[i].epoch_seconds)} for key, curves in self.curves.items()]
            curve = self.curves[select_trial(rows, objective)["key"]][i]
            values.append(curve.test[objective.test_column][curve.best_epoch[-1] - 1])
        return float(np.mean(values))


def _key(space: dict[str, list], config: dict) -> tuple:
    return tuple(_match(name, config[name], values) for name, values in space.items())


def _match(name: str, value, values: list):
    """The space value equal to ``value`` (CSV reads 0.001 back as a float, 16 as an int)."""
    for v in values:
        if v == value or str(v) == str(value):
            return v
        try:
            if isinstance(v, (int, float)) and math.isclose(float(value), float(v), rel_tol=1e-9):
                return v
        except (TypeError, ValueError):
            pass
    raise ReplayError(f"{name}={value!r} is not in the recorded space ({', '.join(map(str, values))})")


def _read_table_files(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    if not folder.is_dir():
        raise ReplayError(f"{str(folder)!r} is not a folder; expected a run folder holding a grid run")
    curves_path = next((folder / n for n in ("curves.csv", "curves.csv.gz") if (folder / n).is_file()), None)
    missing = [n for n, ok in (("run.json", (folder / "run.json").is_file()), ("trials.csv", (folder / "trials.csv").is_file()),
                               ("curves.csv", curves_path is not None)) if not ok]
    if missing:
        raise ReplayError(f"{str(folder)!r} is not a run folder with a grid run: no {', '.join(missing)}")
    try:
        info = json.loads((folder / "run.json").read_text())
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{folder / 'run.json'} is not valid JSON ({exc.msg})") from None
    # pandas >= 3 parses floats exactly (round trip); tests check the replayed numbers against csv's
    return info, pd.read_csv(folder / "trials.csv"), pd.read_csv(curves_path)


def load_table(folder) -> Table:
    """The grid (fifo) run in ``folder`` as a Table; ReplayError names what is missing."""
    folder = Path(folder)
    info, trials, curves = _read_table_files(folder)
    resolved = info.get("resolved", {})
    if "space" not in resolved:
        raise ReplayError(f"{folder / 'run.json'} has no resolved search space; was it written by run_all.py?")
    task = resolved.get("task") or info.get("spec", {}).get("task", "?")  # the name (spec: maybe a task file)
    epochs_param = resolved.get("epochs_param")
    if epochs_param is None:  # run folders written before run.json carried it
        from trainables import get_task  # deliberate: only for tables recorded before run.json had it

        epochs_param = get_task(task).epochs_param
    return table_from_frames(trials, curves, space=resolved["space"], task=task, epochs_param=epochs_param,
                             metric=resolved.get("metric", "val_accuracy"), mode=resolved.get("mode", "max"),
                             grace_period=int(resolved.get("grace_period", 1)),
                             reduction_factor=int(resolved.get("reduction_factor", 3)),
                             max_concurrent=int(resolved.get("max_concurrent", 1)),
                             num_samples=int(resolved.get("num_samples", 1)), source=str(folder),
                             budget=info.get("spec", {}).get("budget", "full"))


def table_from_frames(trials: pd.DataFrame, curves: pd.DataFrame, *, space: dict, task: str, epochs_param: str,
                      metric: str = "val_accuracy", mode: str = "max", grace_period: int = 1,
                      reduction_factor: int = 3, max_concurrent: int = 1, num_samples: int = 1,
                      source: str = "", budget: str = "full") -> Table:
    """A Table from trials.csv and curves.csv rows of a grid run with fifo (every seed of it)."""
    space = {name: list(values) for name, values in space.items()}
    grid_trials = trials[(trials["searcher"] == "grid") & (trials["scheduler"] == "fifo")]
    if grid_trials.empty:
        methods = sorted(set(zip(trials["searcher"], trials["scheduler"])))
        raise ReplayError(f"{source or 'the table'} holds no grid run with the fifo scheduler (it has "
                          f"{', '.join(method_label(s, c) for s, c in methods) or 'no trials'}); record one with "
                          "run_all.py --methods grid:fifo --record-test-curves")
    config_columns = [f"config/{name}" for name in space]
    absent = [c for c in config_columns if c not in grid_trials.columns]
    if absent:
        raise ReplayError(f"trials.csv has no column {absent[0]} for the recorded space")
    objective = Objective(metric, mode)
    for column in ("epoch", metric, "epoch_seconds"):
        if column not in curves.columns:
            raise ReplayError(f"curves.csv has no {column} column")
    has_test = objective.test_column in curves.columns and curves[objective.test_column].notna().any()
    grid_curves = curves[(curves["searcher"] == "grid") & (curves["scheduler"] == "fifo")]
    # Columns as arrays and each trial's rows as positions, once: per-trial pandas work cost 2 s a
    # table on LCBench's 1,944 configurations (the suite loads each table in every process).
    grid_curves = grid_curves.sort_values(["seed", "trial_id", "epoch"], kind="stable")
    rows_of = grid_curves.groupby(["seed", "trial_id"], sort=False).indices
    column = {m: grid_curves[m].to_numpy(dtype=float) for m in grid_curves.columns
              if m in ("epoch", "epoch_seconds") or m.startswith("val_") or (has_test and m.startswith("test_"))}
    val_names = [m for m in column if m.startswith("val_")]
    test_names = [m for m in column if m.startswith("test_")]
    size = math.prod(len(v) for v in space.values())
    table: dict[tuple, list[Curve]] = {}
    for seed, seed_trials in grid_trials.groupby("seed", sort=True):
        seen = set()
        for trial in seed_trials.to_dict("records"):
            config = {name: trial[f"config/{name}"] for name in space}
            key = _key(space, config)
            own_epochs = int(float(dict(zip(space, key))[epochs_param]))
            rows = rows_of.get((seed, trial["trial_id"]))
            epochs = [] if rows is None else [int(e) for e in column["epoch"][rows]]
            if trial["status"] == FAILED or epochs != list(range(1, own_epochs + 1)):
                got = f"epochs 1..{max(epochs)}" if epochs else "no epochs"
                raise ReplayError(f"grid run seed {seed}: trial {trial['trial_id']} ({_describe(config)}) has {got} "
                                  f"of {own_epochs} in curves.csv; a replay table needs every epoch")
            if np.isnan(column[metric][rows]).any() or np.isnan(column["epoch_seconds"][rows]).any():
                raise ReplayError(f"grid run seed {seed}: trial {trial['trial_id']} ({_describe(config)}) has epochs "
                                  f"without {metric} or epoch_seconds in curves.csv")
            seen.add(key)
            table.setdefault(key, []).append(Curve(
                seed=int(seed),
                val={m: column[m][rows] for m in val_names},
                epoch_seconds=column["epoch_seconds"][rows],
                test={m: column[m][rows] for m in test_names} if has_test else None, objective=objective))
        if len(seen) < size:
            missing = next(k for k in itertools.product(*space.values()) if k not in seen)
            raise ReplayError(f"grid run seed {seed} is missing {size - len(seen)} of {size} configurations, e.g. "
                              f"{_describe(dict(zip(space, missing)))}")
    return Table(task=task, space=space, epochs_param=epochs_param, metric=metric, mode=mode,
                 grace_period=grace_period, reduction_factor=reduction_factor, max_concurrent=max_concurrent,
                 num_samples=num_samples, curves=table, source=source, budget=budget)


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())
