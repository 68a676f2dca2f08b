"""The terminal of a run: Ray's start-up and bookkeeping lines that ask nothing of the user
are filtered out (never by switching a Ray feature off), and the run ends by saying where
to look next."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

# Lines Ray logs on every run of ours that tell the user nothing to do. Ray's token
# authentication stays on: only its notice that it is on is dropped.
RAY_NOISE = (
    "Token authentication is enabled",  # ray.init's notice (the feature stays enabled)
    "Started a local Ray instance",
    "Connecting to existing Ray cluster",
    "Successfully pushed file package",  # a task file shipped to a cluster's nodes (machine.start_ray)
    "Connected to Ray cluster",
    "Wrote the latest version of all result files",  # Tune's end-of-experiment bookkeeping
    "`max_concurrent_trials` requires a `Searcher`",  # ours: the generator is given its limit itself
    "View detailed results here",
    "To visualize your results with TensorBoard",
    # Ctrl-C: our one line (experiments.interrupt) says how to continue; Ray's points at Tuner.restore
    "Stop signal received",
    "Experiment has been interrupted",
    # a failed trial: our one line per attempt (experiments.progress.FailureLines) names its error and
    # error.txt; Ray's prints a screen of traceback per attempt, and its summary a list of Trial objects
    "Trial task failed for trial",
    "Trials did not complete",
    "Restoring the run from the latest experiment state file",  # --resume says "resuming <method>" itself
)


# The intermittent "Saving experiment state ... failed" (FileNotFoundError) of a normal run, found in
# Ray's code and reproduced by benchmarks/tune_state_race.py --widen (33 of 64 uploads fail when the
# upload's listing takes 0.3 s): Tune writes the next snapshot into the driver's staging folder
# (``ExperimentState.sync_up_experiment_state``: ``save_fn()``, which writes each state file as
# ``.<uuid>-tmp-<name>`` and renames it, ``_atomic_save``) while the previous upload of that folder
# (a background thread, pyarrow.fs.copy_files: list, then copy) may be listing it; the upload then
# misses the renamed temporary file. Nothing is lost: the next upload copies the renamed file, and
# Tune waits for the last one (the benchmark checks the state left in storage). Only that exact case
# is dropped; any other failure of the upload is shown.
_RENAMED_TMP = re.compile(r"'[^']*/(?:\.[0-9a-f-]+-)?tmp-[^'/]*'")


def _is_snapshot_race(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return ("Saving experiment state to storage" in record.getMessage() and isinstance(exc, FileNotFoundError)
            and bool(_RENAMED_TMP.search(str(exc))))


class RayNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (any(noise in message for noise in RAY_NOISE) or _is_snapshot_race(record))


def filter_ray_noise() -> None:
    """Attach the filter to the handlers of Ray's loggers (a filter on a logger does not see
    records propagated from its children; one on the handler does)."""
    for name in ("ray", "ray.tune", "ray.train"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RayNoise) for f in handler.filters):
                handler.addFilter(RayNoise())


def next_steps(run_dir: Path) -> list[str]:
    """The commands that open a finished run."""
    folder = shlex.quote(str(run_dir))
    return [f"run folder: {run_dir}",
            f"  summary and plots:   {run_dir / 'summary.md'}, {run_dir / 'plots'}",
            f"  TensorBoard:         tensorboard --logdir {folder}",
            f"  rebuild the report:  python -m analysis {folder}",
            f"  in pandas:           from analysis import load_run; run = load_run({str(run_dir)!r})"]
