"""Reproduce the intermittent "Saving experiment state to storage ... failed" ERROR of a normal run,
show which file its exception names, and that nothing is lost.

    python benchmarks/tune_state_race.py [--trials 300] [--repeats 3] [--widen SECONDS]

Tunes the tests' instant analytic task the way the runner does (a forced snapshot of Tune's state
as each trial ends: CheckpointConfig(num_to_keep=1)) and counts the records Ray's experiment-state
logger emits with an exception, printing the file each names, how many experiments.console drops
as the known race, and whether the state left in storage holds every trial. The cause, in Ray's
code: Tune writes the next snapshot into the driver's staging folder (``save_fn()``; each state file
as ``.<uuid>-tmp-<name>``, renamed, ``_atomic_save``) while the previous upload of that folder, in a
background thread, may be listing it (``sync_up_experiment_state`` waits for it only afterwards);
the upload then misses the renamed file: pyarrow's FileNotFoundError. Unaided it is rare (0 in 700
trials here); ``--widen 0.3`` makes each upload's listing take 0.3 s, as on a slow disk or a large
folder, and reproduces it (33 of 64 uploads in 2 x 30 trials, all naming a ``.<uuid>-tmp-`` state
file; all 33 dropped by the filter; the state in storage whole in 2 of 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        if record.exc_info and "Saving experiment state" in record.getMessage():
            self.records.append(record)


CALLS: list = []


def widen_upload_window(seconds: float) -> None:
    """Ray's upload of the driver's staging folder (``_pyarrow_fs_copy_files``, run in the syncer's
    background thread) replaced by: list the folder (as pyarrow.fs.copy_files does first) over
    ``seconds``, as a slow listing of a large tree would, then copy each listed file. A file renamed
    away meanwhile raises pyarrow's FileNotFoundError, as in the real copy, only more often."""
    import time

    import pyarrow.fs
    from ray.train._internal import storage

    real = storage._pyarrow_fs_copy_files

    def slow_copy(source, destination, source_filesystem=None, destination_filesystem=None, **kwargs):
        if source_filesystem is not None or not Path(source).is_dir():  # downloads and single files: as Ray does
            return real(source, destination, source_filesystem, destination_filesystem, **kwargs)
        local = pyarrow.fs.LocalFileSystem()
        CALLS.append(source)
        listed, end = set(), time.monotonic() + seconds
        while time.monotonic() < end:  # a listing that takes `seconds` (a large tree, a slow disk): what
            listed |= {i.path for i in local.get_file_info(pyarrow.fs.FileSelector(str(source), recursive=True))
                       if i.type == pyarrow.fs.FileType.File}  # existed at any moment of it is listed
            time.sleep(0.001)
        for path in sorted(listed):
            relative = Path(path).relative_to(source)
            real(path, f"{destination}/{relative}", source_filesystem=local,
                 destination_filesystem=destination_filesystem, **kwargs)

    storage._pyarrow_fs_copy_files = slow_copy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--searcher", default="hyperopt",
                        help="hyperopt (default: a larger state to write, a wider window) or random")
    parser.add_argument("--widen", type=float, default=0.0, metavar="SECONDS",
                        help="make each upload of Tune's state list the staging folder, wait SECONDS, then copy "
                             "file by file: a slow disk's window between pyarrow's listing and its copy, widened")
    args = parser.parse_args(argv)

    import ray

    from experiments.console import RayNoise
    from experiments.tune_adapter import can_restore, trial_statuses
    from tests.analytic import TASK
    from tests.tuning import tune

    if args.widen > 0:
        widen_upload_window(args.widen)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    counter = Count()
    logging.getLogger("ray.tune.execution.experiment_state").addHandler(counter)
    task = dataclasses.replace(TASK, space={**TASK.space, "epochs": (1,)})
    whole = []  # per repeat: does the state left in storage hold every trial, finished (nothing lost)?
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tuned = tune(task, args.searcher, "fifo", repeat, tmp, num_samples=args.trials, max_concurrent=2)
            method_dir = Path(tmp) / f"{args.searcher}-fifo-s{repeat}"
            statuses = trial_statuses(method_dir)
            whole.append(can_restore(method_dir) and len(statuses) == len(tuned.results) == args.trials
                         and set(statuses.values()) == {"TERMINATED"})
    missing = [re.search(r"'([^']+)'", str(r.exc_info[1])) for r in counter.records]
    names = [Path(m.group(1)).name if m else str(r.exc_info[1])[:80] for m, r in zip(missing, counter.records)]
    kinds = sorted({type(r.exc_info[1]).__name__ for r in counter.records})
    dropped = sum(not RayNoise().filter(r) for r in counter.records)
    print(f"{args.repeats} x {args.trials} trials: {len(counter.records)} failed uploads of Tune's state "
          f"({', '.join(kinds) or 'none'}); files named: {', '.join(sorted(set(names))) or 'none'}")
    print(f"widened uploads: {len(CALLS)}")
    print(f"state left in storage holds every trial, finished, and restores: {sum(whole)} of {len(whole)} repeats")
    print(f"dropped by experiments.console.RayNoise as the known race: {dropped} of {len(counter.records)}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
