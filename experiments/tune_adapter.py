"""Every read of Ray Tune's private internals, in one place.

Ray offers no public way to get a ``Trial`` (config, id) for a trial that failed before its
first report, or to read trial statuses from a method folder while a run is going on, so
these read ``ResultGrid._experiment_analysis`` and Tune's ``experiment_state-*.json``.
``tests/test_tune_adapter.py`` checks each read against the Ray installed and fails loudly,
naming this module, when an upgrade changes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def trials_with_results(results) -> list[tuple]:
    """(Trial, Result) of every trial of a ``ResultGrid``, in the order Tune created them. A Result
    carries no config or trial id for a trial that failed before its first report; its Trial does.

    The ResultGrid's own order is not that: Tune lists trials in the order it first snapshotted
    them, several per step taken from a set (``TuneController._trials_to_cache``), so it differs
    between runs and after ``--resume``, and the pick's tie-break ("the trial started first",
    core.rules.select_trial) followed it. The creation number leads each trial's ``experiment_tag``
    (``BasicVariantGenerator`` and ``SearchGenerator`` both write ``"<counter>_..."``)."""
    trials = results._experiment_analysis.trials
    if len(trials) != len(results):
        raise RuntimeError("Ray's ResultGrid and its trials disagree in length; experiments/tune_adapter.py "
                           "needs updating for this Ray version")
    return sorted(zip(trials, results), key=lambda pair: creation_number(pair[0]))


def creation_number(trial) -> int:
    """The counter Tune's trial generators put first in a Trial's ``experiment_tag``."""
    tag = getattr(trial, "experiment_tag", None)
    head = str(tag).split("_", 1)[0]
    if not head.isdigit():
        raise RuntimeError(f"trial {trial.trial_id}: experiment_tag {tag!r} does not "
                           "start with Tune's trial counter; experiments/tune_adapter.py needs updating for this Ray version")
    return int(head)


def trial_gpu_share(trial) -> float:
    """The share of a GPU the Trial's (last) attempt asked Ray for."""
    return float(trial.placement_group_factory.required_resources.get("GPU", 0.0))


def failure_texts(trial) -> list[str]:
    """The Trial's failed attempts, one text each, from the error file Tune appends to
    (``Failure # N (occurred at ...)`` then the traceback); empty where it never failed. The driver's
    staging copy first: Tune writes the failure there at once and syncs it to storage later."""
    text = None
    if trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text(errors="replace")
    elif trial.run_metadata.error_filename:
        text = trial.get_error()
    if not text:
        return []
    return [part for part in re.split(r"^Failure # \d+ ", text, flags=re.M) if part.strip()]


def retry_with_gpu_share(trial, share: float, last: bool) -> None:
    """Give a Trial that Tune is re-queueing (``Callback.on_trial_recover``: PENDING again) a new GPU
    share, its CPUs as they were; ``last``: a failure of this attempt is final (Tune's per-trial
    max_failures)."""
    request = trial.placement_group_factory.required_resources
    trial.update_resources({"cpu": request.get("CPU", 0.0), "gpu": share})
    if last:
        trial.max_failures = trial.run_metadata.num_failures


def upload_trial_logs(trial) -> None:
    """Copy the files Tune's loggers write for a trial (result.json, progress.csv, TensorBoard events) from
    the driver's staging folder to the trial's folder in storage, now.

    Tune syncs them only with its experiment snapshots, and when it starts a trial that has a
    checkpoint it first copies them back from storage over the staging copies
    (``LoggerCallback._restore_from_remote``): a paused trial resumed before the next sync lost the
    reports of its first epochs (result.json held epoch 2 only; ray 2.60)."""
    import pyarrow.fs

    local = Path(trial.local_path)
    remote = Path(trial.storage.trial_fs_path).as_posix()
    if not local.is_dir() or local.resolve().as_posix() == remote:
        return
    target = trial.storage.storage_filesystem
    for path in local.iterdir():
        if path.is_file():
            pyarrow.fs.copy_files(path.as_posix(), f"{remote}/{path.name}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                                  destination_filesystem=target)


def tuner_scheduler(tuner):
    """The scheduler a Tuner ran with (a restored Tuner's is the one unpickled with it); None where
    this Ray keeps it elsewhere."""
    config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    return getattr(config, "scheduler", None)


def newest_state(method_dir: Path) -> dict | None:
    """The newest experiment state Tune saved in a method folder; None where there is none
    yet or it cannot be read (a truncated file: ray issue 58179)."""
    states = sorted(Path(method_dir).glob("experiment_state-*.json"))
    try:
        return json.loads(states[-1].read_text()) if states else None
    except (OSError, ValueError):
        return None


def trial_statuses(method_dir: Path) -> dict[str, str]:
    """trial id -> status (PENDING, RUNNING, TERMINATED, ERROR) in the newest experiment state
    Tune saved in a method folder; empty where there is none yet or it cannot be read."""
    statuses = {}
    for entry in (newest_state(method_dir) or {"trial_data": []})["trial_data"]:
        trial = json.loads(entry[0] if isinstance(entry, list) else entry)  # [trial JSON, run metadata JSON]
        statuses[trial["trial_id"]] = trial["status"]
    return statuses


def can_restore(method_dir: Path) -> bool:
    """Whether ``Tuner.restore`` can continue a method folder: Tune's check, plus a state file
    that parses (Tune's own check passes a truncated one)."""
    from ray import tune

    return newest_state(method_dir) is not None and tune.Tuner.can_restore(str(method_dir))


def best_reported(trial, objective) -> float | None:
    """The best value of ``objective.metric`` (in its direction) a running or finished Trial
    reported (Tune's own per-trial statistics, ``Trial.metric_analysis``)."""
    value = (getattr(trial, "metric_analysis", None) or {}).get(objective.metric, {}).get(objective.mode)
    return None if value is None else float(value)
