"""A suite folder's rows (one replay per line of ``rows.jsonl``, appended as each ends): reading them,
the committed ``rows.jsonl.gz`` too, and the settings checks that let rows of several runs be pooled
(a rerun into the same folder, ``--with`` another folder)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


class SuiteError(ValueError):
    """An --out folder that holds another suite's rows, or a --with folder made otherwise."""


ROWS_FILE = "rows.jsonl"  # one replay per line, appended as each finishes: what a rerun resumes from
# The settings a row depends on besides its (data set, method, seed): a rerun into the same folder
# must share them, or its rows could not be pooled with the ones already there.
ROW_SETTINGS = ("tables", "budget", "max_trials", "max_concurrent")


def check_resumable(out: Path, settings: dict) -> None:
    """Refuse (before anything is written) to add rows to a folder whose rows were made otherwise."""
    if (Path(out) / "seeds.csv").is_file() and not (Path(out) / ROWS_FILE).is_file():
        raise SuiteError(f"{out} holds a suite's results without its {ROWS_FILE} (an older version's): "
                         "use another --out")
    if not (Path(out) / ROWS_FILE).is_file() or not (Path(out) / "suite.json").is_file():
        return
    before = _settings_of(out, suffix=": use another --out")
    differ = _first_difference(before, settings)
    if differ:
        key, theirs, mine = differ
        raise SuiteError(f"{out} holds rows made with {key}={theirs!r}, not {mine!r}: "
                         "use another --out, or the same settings to add seeds or methods")


def check_joinable(folder: Path, settings: dict) -> None:
    """Refuse to reuse (--with) the rows of a suite folder made with other settings; its tables are
    compared by their folder's name (the cache key of the tables' build), not by where they lie."""
    theirs = _settings_of(folder, prefix="--with: ")
    differ = _first_difference(theirs, settings, tables_by_name=True)
    if differ:
        key, other, mine = differ
        raise SuiteError(f"--with {folder}: its rows were made with {key}={other!r}, this run's with {mine!r}")


def _settings_of(folder: Path, prefix: str = "", suffix: str = "") -> dict:
    """A suite folder's suite.json, or a SuiteError that says why it cannot be read."""
    try:
        return json.loads((Path(folder) / "suite.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{prefix}{folder}/suite.json cannot be read ({exc}){suffix}") from exc


def _first_difference(theirs: dict, mine: dict, tables_by_name: bool = False) -> tuple | None:
    """The first of ROW_SETTINGS on which two suites' settings differ, as (key, theirs, mine); None if none."""
    for key in ROW_SETTINGS:
        other, own = theirs.get(key), mine.get(key)
        if key == "tables" and tables_by_name:
            other, own = Path(str(other)).name, Path(str(own)).name
        if other != own:
            return key, other, own
    return None


def read_rows(folder: Path) -> list[dict]:
    """A suite folder's rows: rows.jsonl as a run leaves it (a half-written last line skipped), or
    the rows.jsonl.gz committed under docs/."""
    folder = Path(folder)
    if (folder / ROWS_FILE).is_file():
        return read_journal(folder / ROWS_FILE)
    if (folder / f"{ROWS_FILE}.gz").is_file():
        with gzip.open(folder / f"{ROWS_FILE}.gz", "rt") as f:
            return [json.loads(line) for line in f if line.strip()]
    raise SuiteError(f"no {ROWS_FILE} or {ROWS_FILE}.gz in {folder}")


def read_journal(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a run killed while writing it: that replay reruns
                continue
    return rows


def row_key(row) -> tuple:
    return row["task"], row["searcher"], row["scheduler"], int(row["seed"])
