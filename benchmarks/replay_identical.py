"""Committed LCBench rows replayed again: a change meant to make the replay faster, and nothing else,
must give the same rows.

    python benchmarks/replay_identical.py docs/lcbench-freeze-thaw --methods dpl:freeze_thaw --per-method 3

For each method, ``--per-method`` of the folder's rows (spread over its data sets and seeds, the same
sample every time) are replayed with the folder's settings (suite.json: budget, trial guard; the
concurrency is the replay's default) and compared field by field with what is committed, all but
``replay_seconds``; prints each difference and the count of identical rows, with the seconds taken
against the committed ones. Skips, saying so, without the LCBench tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)


def sample(rows: list[dict], per_method: int) -> list[dict]:
    by_method: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["task"], int(r["seed"]))):
        by_method.setdefault(f"{row['searcher']}:{row['scheduler']}", []).append(row)
    picked = []
    for method_rows in by_method.values():
        step = max(1, len(method_rows) // per_method)
        picked += method_rows[::step][:per_method]
    return picked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a suite folder with rows.jsonl(.gz) and suite.json")
    parser.add_argument("--methods", default=None, help="comma-separated searcher:scheduler (default: all)")
    parser.add_argument("--per-method", type=int, default=2)
    args = parser.parse_args(argv)

    from experiments.replay.rows import read_rows
    from experiments.replay.simulator import _one_blas_thread
    from experiments.replay.suite import _job, default_tables_dir

    folder = Path(args.folder)
    tables = default_tables_dir()
    if not tables.is_dir():
        _common.skip(f"no LCBench tables at {tables} (python -m experiments.replay build-lcbench)")
    settings = json.loads((folder / "suite.json").read_text())
    wanted = set(args.methods.split(",")) if args.methods else None
    rows = [r for r in read_rows(folder) if wanted is None or f"{r['searcher']}:{r['scheduler']}" in wanted]
    _one_blas_thread()  # as the suite's worker processes compute
    same, ours_s, theirs_s = 0, 0.0, 0.0
    picked = sample(rows, args.per_method)
    for row in picked:
        mine = _job((str(tables / row["task"]), row["searcher"], row["scheduler"], int(row["seed"]),
                     settings["budget"], settings["max_trials"]))
        differ = [k for k in row if k != "replay_seconds" and row[k] != mine.get(k)]
        ours_s, theirs_s = ours_s + mine["replay_seconds"], theirs_s + row["replay_seconds"]
        name = f"{row['task']} {row['searcher']}:{row['scheduler']} seed {row['seed']}"
        print(f"{name}: {'identical' if not differ else 'DIFFERS in ' + ', '.join(differ)} "
              f"({mine['replay_seconds']:.1f} s, committed {row['replay_seconds']:.1f} s)", flush=True)
        same += not differ
    print(f"identical={same}/{len(picked)} replay_seconds={ours_s:.0f} committed_seconds={theirs_s:.0f}")
    return 0 if same == len(picked) else 1


if __name__ == "__main__":
    sys.exit(main())
