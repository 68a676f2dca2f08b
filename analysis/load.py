"""Load a run folder into pandas."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.records import CLASSIFICATION_METRICS, METHOD_COLUMNS, RESOURCE_COLUMNS, curve_columns, summary_columns
from core.rules import Objective


class NotARunFolder(ValueError):
    """The folder lacks what every run folder has (run.json and trials.csv)."""


@dataclass
class Run:
    """One run folder as DataFrames; every row carries task, searcher, scheduler and seed."""

    path: Path
    info: dict  # run.json: spec, resolved settings, versions, git commit, device
    trials: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    resources: pd.DataFrame

    @property
    def task(self) -> str:
        """The task's name (run.json's spec names a task file by its path)."""
        return self.info.get("resolved", {}).get("task") or self.info.get("spec", {}).get("task", "")

    @property
    def objective(self) -> Objective:
        """The task's metric and direction, from run.json (runs written before tasks could name
        theirs optimized val_accuracy, max)."""
        return objective_of(self.info)

    @property
    def metrics(self) -> tuple[str, ...]:
        """What the task's evaluation returned: curves.csv has val_<name>, summary.csv test_<name>."""
        return metrics_of(self.info)

    @property
    def table(self) -> pd.DataFrame:
        """summary.md's table: summary.csv's rows with the regret to the grid and the grid's shares,
        in the report's columns (what ``lowres-tune`` prints at the end)."""
        from analysis.report import display_columns, with_grid_comparison

        table = with_grid_comparison(self.summary, self.objective)
        return table[[c for c in display_columns(self) if c in table.columns]]

    @property
    def methods(self) -> list[tuple[str, str]]:
        """(searcher, scheduler) pairs in the order they ran."""
        return list(dict.fromkeys(zip(self.summary["searcher"], self.summary["scheduler"])))


def objective_of(info: dict) -> Objective:
    resolved = info.get("resolved", {})
    return Objective(resolved.get("metric", "val_accuracy"), resolved.get("mode", "max"))


def metrics_of(info: dict) -> tuple[str, ...]:
    return tuple(info.get("resolved", {}).get("metrics", CLASSIFICATION_METRICS))


def _read(path: Path, columns) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=list(columns))
    return pd.read_csv(path)


def load_run(path) -> Run:
    """trials, curves, summary and resources of a run folder (empty frames for tables a run
    interrupted early had no time to write)."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunFolder(f"{str(path)!r} is not a folder; expected a run folder (<results>/<task>/<run-id>)")
    missing = [name for name in ("run.json", "trials.csv") if not (path / name).is_file()]
    if missing:
        raise NotARunFolder(f"{str(path)!r} is not a run folder: no {' or '.join(missing)} "
                            "(expected <results>/<task>/<run-id> as written by run_all.py)")
    try:
        info = json.loads((path / "run.json").read_text())
    except json.JSONDecodeError as exc:
        raise NotARunFolder(f"{path / 'run.json'} is not valid JSON ({exc.msg})") from None
    trials = pd.read_csv(path / "trials.csv")
    metric, metrics = objective_of(info).metric, metrics_of(info)
    return Run(path=path, info=info, trials=trials, curves=_read(path / "curves.csv", curve_columns(metrics)),
               summary=_read(path / "summary.csv", summary_columns(metric, metrics)),
               resources=_read(path / "resources.csv", RESOURCE_COLUMNS))


__all__ = ["Run", "NotARunFolder", "load_run", "METHOD_COLUMNS"]
