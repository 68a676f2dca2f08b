"""``--resume``: continue an interrupted run in its own folder with the settings in its run.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from pathlib import Path

from core import records
from core.records import read_csv_rows as read_rows
from experiments import machine, runlock
from experiments.gpus import GpuProbeError, visible_gpus
from experiments.orphans import end_orphans_of_runs, own_session_dir
from experiments.plan import Method, MethodOutcome, RunPlan
from experiments.runner import now, quiet_echo, run_methods
from experiments.spec import ExperimentSpec, SpecError
from trainables import get_task, task_file


class NotResumable(SpecError):
    """--resume was given a folder that is not an interrupted run (one line for the user)."""


def spec_from_info(info: dict) -> ExperimentSpec:
    """The ExperimentSpec a run.json was written from."""
    saved = dict(info["spec"])
    saved["methods"] = tuple(tuple(m) for m in saved["methods"])
    saved["seeds"] = tuple(saved["seeds"])
    saved["results_dir"] = Path(saved["results_dir"])
    known = {f.name for f in fields(ExperimentSpec)}
    return ExperimentSpec(**{k: v for k, v in saved.items() if k in known})


def earlier_samples(rows: list[dict]) -> list[dict]:
    """resources.csv rows of an interrupted run as the monitor keeps them (numbers, None for empty)."""
    def cell(value: str):
        if value == "":
            return None
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number

    return [{k: cell(v) for k, v in row.items()} for row in rows]


def resume(run_dir: Path, echo=None, quiet: bool = False) -> Path:
    """Continue an interrupted run: methods with a summary row are kept as they are; the
    interrupted one continues through ``Tuner.restore``; the rest run. ``quiet``: print as
    --quiet does, whatever the run was started with (display only: nothing computed changes)."""
    run_dir = Path(run_dir).absolute()
    if not (run_dir / "run.json").is_file():
        raise NotResumable(f"--resume {str(run_dir)!r} is not a run folder (no run.json)")
    try:
        info = json.loads((run_dir / "run.json").read_text())
        spec = spec_from_info(info)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise NotResumable(f"--resume {str(run_dir)!r}: run.json cannot be read back ({exc})") from None
    if info.get("status") == "finished":
        raise NotResumable(f"--resume {str(run_dir)!r}: the run has finished; there is nothing to resume")
    try:
        runlock.acquire(run_dir)  # before anything is written: a second --resume of this folder stops here
    except runlock.RunLocked as exc:
        raise NotResumable(f"--resume: {exc}") from None
    if quiet:
        spec = dataclasses.replace(spec, quiet=True)
    echo = echo or (quiet_echo if spec.quiet else print)
    task = get_task(spec.task).for_budget(spec.budget)
    try:
        plan = RunPlan.from_resolved(task, info["resolved"], record_test_curves=spec.record_test_curves,
                                     max_failures=spec.max_failures,
                                     gpus=visible_gpus() if info["resolved"].get("gpu_id") is not None else [],
                                     keep_checkpoints=spec.keep_checkpoints)
    except (ValueError, GpuProbeError) as exc:
        raise NotResumable(f"--resume {str(run_dir)!r}: {exc}") from None

    def method(row) -> Method:
        return Method(row["searcher"], row["scheduler"], int(row["seed"]))

    # The finished methods' rows, exactly as written (strings, as read), in the run's order.
    summaries = {method(r): r for r in read_rows(run_dir / "summary.csv")}
    trials, curves = read_rows(run_dir / "trials.csv"), read_rows(run_dir / "curves.csv")
    outcomes = [MethodOutcome(trials=tuple(r for r in trials if method(r) == key),
                              curves=tuple(r for r in curves if method(r) == key), summary=summaries[key])
                for key in (Method(s, c, seed) for seed in spec.seeds for s, c in spec.methods) if key in summaries]
    samples = earlier_samples(read_rows(run_dir / "resources.csv"))
    if "started_time" not in info and "started_at" not in info:  # run.json written before it recorded the start
        first = next((s for s in samples if s["time"] is not None and s["wall_seconds"] is not None), None)
        info["started_time"] = first["time"] - first["wall_seconds"] if first else min(
            map(records.unix_time, info.get("methods_started", {}).values()), default=None)
    end_orphans_of_runs([run_dir], echo)  # what a kill -9 of this run left running, by its Ray session
    machine.start_ray(spec.ray_address, plan.gpu, task_file(spec.task))
    if not spec.ray_address:
        info["ray_session_dir"] = own_session_dir()
    info.setdefault("resumed_at", []).append(now())
    info.setdefault("methods_started", {})
    records.write_json(run_dir / "run.json", info)
    echo(f"resuming {run_dir}: {len(outcomes)} of {len(spec.seeds) * len(spec.methods)} methods finished")
    try:
        return run_methods(spec, plan, run_dir, info, outcomes, echo, earlier_samples=samples)
    finally:
        runlock.release(run_dir)
