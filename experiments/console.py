"""The terminal of a run: Ray's start-up and bookkeeping lines that ask nothing of the user
are filtered out (never by switching a Ray feature off), and the run ends by saying where
to look next."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

from core import records

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
    # a trial Tune started as a --time-budget ran out, ended before its first epoch (experiments.budget):
    # it trained nothing and is left out of the tables (experiments.collect)
    "Failed to fetch metrics for",
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


def display_columns(task, budgeted: bool = False) -> tuple[str, ...]:
    """The columns printed at the end of a run (summary.md has them all)."""
    return ("searcher", "scheduler", "seed", "n_trials", "epochs_trained", task.objective.best_column,
            *records.test_columns(task.metrics), "wall_seconds", "trial_seconds", "gpu_seconds",
            *(("compute_spent", "compute_budget") if budgeted else ()))


def next_steps(run_dir: Path) -> list[str]:
    """The commands that open a finished run."""
    folder = shlex.quote(str(run_dir))
    return [f"run folder: {run_dir}",
            f"  summary and plots:   {run_dir / 'summary.md'}, {run_dir / 'plots'}",
            f"  TensorBoard:         tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}  (a run per "
            f"method; every trial: --logdir {shlex.quote(str(run_dir / 'tune'))})",
            f"  rebuild the report:  python -m analysis {folder}",
            f"  in pandas:           from analysis import load_run; run = load_run({str(run_dir)!r})"]


def recommended_lines(run_dir: Path, recommendation: dict, summaries: list[dict], task) -> list[str]:
    """How the recommended method's pick ends a run: its configuration, validation and test scores,
    where its weights are and the three lines of Python that load them (trainables.load_model)."""
    from core.rules import method_name

    objective = task.objective
    searcher, _, scheduler = recommendation["method"].partition(":")
    mine = [s for s in summaries if (s["searcher"], s["scheduler"]) == (searcher, scheduler) and s.get("best_trial_id")]
    if not mine:
        return [f"recommended {recommendation['method']}: no pick (every trial failed; see trials.csv)"]
    best = max(mine, key=lambda s: objective.signed(float(s[objective.best_column])))
    name = method_name(searcher, scheduler, int(best["seed"]))
    tests = ", ".join(f"{k.removeprefix('test_')} {float(v):.4f}" for k, v in best.items()
                      if k.startswith("test_") and v not in (None, ""))
    weights = sorted((Path(run_dir) / "tune" / name / f"trial_{best['best_trial_id']}").glob("checkpoint_*"))
    return [f"recommended {recommendation['method']} ({name}): {objective.metric} {float(best[objective.best_column]):.4f}"
            f"; test: {tests or '-'}",
            f"  configuration: {best['best_config']}",
            f"  weights: {weights[-1] / 'best.safetensors' if weights else '(not kept)'}",
            "  in Python:",
            "    from trainables import load_model",
            f"    model = load_model({str(run_dir)!r}, {name!r})  # the task's model, these weights, CPU, eval mode",
            "    print(model)"]

