"""Run an experiment: one Ray Tune ``Tuner`` per method and seed, into one run folder.

``run(spec)`` creates ``<results-dir>/<task>/<run-id>/`` (docs/DESIGN.md's run-folder
contract), starts Ray (or connects to a cluster), tunes each (searcher, scheduler, seed) in
turn, scores each method's pick on the test split, and rewrites the tables atomically after
every method, so whatever finished is on disk even if the run is interrupted.
``experiments.resume`` continues an interrupted run through ``run_methods``.
"""

from __future__ import annotations

import secrets
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tensorboardX import SummaryWriter

from analysis.report import build, format_table, write_summary
from core import records
from core.cli import command
from core.rules import method_label, method_name, select_trial
from experiments import machine, packing, runlock
from experiments import progress as progress_lines
from experiments.boards import write_method_run
from experiments.checkpoints import default_pause_disk_gb, keep_best_pick, keep_only_the_pick
from experiments.collect import collect_trials, error_line
from experiments.console import display_columns, next_steps, recommended_lines
from experiments.gpus import GpuProbeError, visible_gpus
from experiments.interrupt import Interrupted, InterruptGuard
from experiments.monitor import ClusterMonitor, ResourceMonitor
from experiments.orphans import earlier_runs, end_orphans_of_runs, own_session_dir
from experiments.plan import Method, MethodOutcome, RunPlan, fixed_config
from experiments.progress import FailureLines, Progress
from experiments.scoring import evaluate_selected, summarize_method
from experiments.spec import ExperimentSpec, RunFailed, SpecError, StorageFailed, is_uri
from experiments.startup import check_task_code, gpu_share_line, plan_budget, probe_shares, samples_note
from experiments.tune_adapter import can_restore
from experiments.tuning import expected_trials, tune_method
from trainables import TASK_MODULES, get_task, task_file


def quiet_echo(*args, **kwargs) -> None:
    """--quiet: progress and pointers are not printed (errors still are, on stderr)."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_origin(info: dict) -> float | None:
    """When the run started, as a Unix time: the origin of resources.csv's wall_seconds (run.json's
    started_at; a run.json of an older version kept it as a number, started_time)."""
    if info.get("started_time") is not None:
        return float(info["started_time"])
    return records.unix_time(info["started_at"]) if info.get("started_at") else None


def create_run_dir(results_dir: Path, task_name: str) -> Path:
    """A new, empty run folder: ``<results_dir>/<task>/<UTC time>-<random>``; never an existing one."""
    parent = Path(results_dir) / task_name
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        try:
            (parent / run_id).mkdir()  # exclusive: two runs in the same second get different folders
            return parent / run_id
        except FileExistsError:
            continue


def run(spec: ExperimentSpec, echo=None, out=print) -> Path:
    """Run every method of ``spec`` and return the run folder.

    ``echo`` prints progress and pointers (None: print, or nothing with ``spec.quiet``); ``out``
    the two things --quiet still prints, the run folder and the final table (the Python API passes
    a no-op: it returns both). Every check that can fail on the user's input (task options, GPU
    choice) runs before the run folder is created."""
    echo = echo or (quiet_echo if spec.quiet else print)
    task = get_task(spec.task).for_budget(spec.budget)
    try:
        options = task.resolve_options(spec.task_options)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if spec.task not in TASK_MODULES:  # a user's task: its code against its declaration, before any trial
        check_task_code(task, options)
    try:
        gpus = visible_gpus()
    except GpuProbeError as exc:
        raise SpecError(str(exc)) from None
    gpu = machine.choose_gpu(spec, gpus, task.gpus_per_trial)
    num_samples = spec.resolved_num_samples(task)
    if not spec.ray_address:  # Ray processes an earlier killed run of this folder left running
        end_orphans_of_runs(earlier_runs(spec.results_dir, task.name), echo)
    machine.start_ray(spec.ray_address, gpu, task_file(spec.task))
    resources = machine.trial_resources(task, spec.cpus_per_trial, spec.gpus_per_trial)
    if resources["gpu"]:  # one short task with a trial's share, before the run folder: one line, not every trial
        machine.preflight(resources)
    shares, probed = {}, {}
    if spec.gpus_per_trial == packing.AUTO and resources["gpu"]:
        probed, resources = probe_shares(task, options, resources, echo)
        shares = {key: numbers["share"] for key, numbers in probed.items()}
    spec, decided = plan_budget(spec, task, options, resources, shares, num_samples, out)
    run_dir = create_run_dir(spec.results_dir, task.name)
    runlock.acquire(run_dir)  # new and ours: a --resume of it while it runs is refused
    storage = tune_storage(spec, run_dir)
    # with shares per class, as many at once as the smallest share allows (Ray packs the rest)
    smallest = {**resources, "gpu": min(shares.values())} if shares else resources
    plan = RunPlan(task=task, num_samples=num_samples,
                   max_concurrent=spec.max_concurrent or machine.default_max_concurrent(smallest),
                   resources=resources, fixed_config=fixed_config(options, spec.record_test_curves),
                   max_failures=spec.max_failures, gpu=gpu, keep_checkpoints=spec.keep_checkpoints,
                   gpu_shares=shares, pause_disk_gb=spec.pause_disk_gb or default_pause_disk_gb(run_dir),
                   time_budget_s=spec.time_budget)
    info = {
        "spec": {**asdict(spec), "results_dir": str(spec.results_dir)},
        "resolved": plan.resolved(options),
        "versions": machine.package_versions(),
        "git": machine.git_commit(),
        "device": machine.describe_device(gpus),
        "started_at": records.iso_time(time.time()),  # the origin of resources.csv's wall_seconds, across resumes
        "status": "running",
        "methods_started": {},  # Tune folder name -> when the method started (records.iso_time)
        "tune_storage": storage,  # where Ray Tune keeps the method folders (tune/ links there with --storage)
        # the session folder of the Ray this run started (None on a cluster): how a later run finds
        # what a kill -9 of this one left running (experiments.orphans)
        "ray_session_dir": None if spec.ray_address else own_session_dir(),
        "gpu_probe": probed,  # --gpus-per-trial auto: what each memory class measured on the card
        **decided,  # estimate (--time-budget) and recommendation (--methods recommended): experiments.startup
    }
    records.write_json(run_dir / "run.json", info)
    out(f"run folder: {run_dir}")  # also with --quiet: the one line that says where the results go
    note = samples_note(spec, task, num_samples)
    if note:
        echo(note)
    if not resources["gpu"]:
        echo("no GPU requested or available: trials run on the CPU; GPU figures are left empty")
    else:
        echo(gpu_share_line(spec, task, resources, gpu))
    try:
        return run_methods(spec, plan, run_dir, info, [], echo, table=out)
    finally:
        runlock.release(run_dir)


def run_method(plan: RunPlan, method: Method, storage: str, monitor=None,
               first_started: float | None = None, callbacks: list | None = None) -> MethodOutcome:
    """Tune one method and score its pick. ``first_started``: when the method first started,
    for a method interrupted and now resumed (its Tune folder is continued, not restarted)."""
    if monitor is not None:
        monitor.set_method(method.searcher, method.scheduler, method.seed)
    try:
        tuned = tune_method(plan, method, storage, callbacks=callbacks, resume=first_started is not None)
    finally:
        if monitor is not None:
            monitor.set_method(None)
    origin = tuned.started if first_started is None else first_started
    collected = collect_trials(tuned.results, plan.task, method, origin, evicted=tuned.evicted)
    wall = tuned.wall_seconds
    if first_started is not None:
        # Wall-clock of a resumed method: from its first start, less the time it lay dead
        # (from its last report before the resume to the resume).
        before = [c["wall_seconds"] for c in collected.curves if c["wall_seconds"] + origin < tuned.started]
        wall += max(before, default=0.0)
    selected = select_trial(collected.trials, plan.task.objective)
    test_metrics = score_pick(plan, method, collected.results[selected["trial_id"]]) if selected else {}
    if plan.keep_checkpoints != "all":
        keep_only_the_pick(collected.results, selected["trial_id"] if selected else None)
    samples = monitor.rows(method.searcher, method.scheduler, method.seed) if monitor is not None else None
    summary = summarize_method(plan.task, method, collected.trials, wall, test_metrics, selected,
                               plan.gpus_per_trial, samples, collected.curves, plan.time_budget_s)
    return MethodOutcome(trials=collected.trials, curves=collected.curves, summary=summary)


def score_pick(plan: RunPlan, method: Method, result) -> dict:
    """The pick's test metrics; where the scoring task's worker dies past Ray's retries (killed,
    out of memory), one line on stderr and empty test columns: the method's trials stand."""
    import ray.exceptions

    try:
        return evaluate_selected(plan, result)
    except ray.exceptions.RayError as exc:
        print(f"{method.name}: scoring the pick on the test split failed ({error_line(exc)}); its test columns "
              "are left empty", file=sys.stderr)
        return {}


def write_tables(run_dir: Path, task, outcomes: list[MethodOutcome], monitor=None) -> None:
    records.write_csv(run_dir / "trials.csv", records.trial_columns(task.space, task.metric),
                      [row for o in outcomes for row in o.trials])
    records.write_csv(run_dir / "curves.csv", records.curve_columns(task.metrics),
                      [row for o in outcomes for row in o.curves])
    records.write_csv(run_dir / "summary.csv", records.summary_columns(task.metric, task.metrics),
                      [o.summary for o in outcomes])
    if monitor is not None:
        records.write_csv(run_dir / "resources.csv", records.RESOURCE_COLUMNS, monitor.rows())
    write_summary(run_dir)


def run_methods(spec: ExperimentSpec, plan: RunPlan, run_dir: Path, info: dict, outcomes: list[MethodOutcome],
                echo, earlier_samples: list[dict] | None = None, table=print) -> Path:
    """Run the methods of ``spec`` that ``outcomes`` does not hold yet, then finish the run.
    ``info`` is run.json's content; it is rewritten as methods start and when the run ends.
    ``echo`` prints progress and pointers (a no-op with --quiet); ``table`` the final table."""
    with progress_lines.muted(spec.quiet):  # also the live lines of a resumed method's restored callbacks
        try:
            return _run_methods(spec, plan, run_dir, info, outcomes, echo, earlier_samples, table)
        except (Interrupted, KeyboardInterrupt, StorageFailed, RunFailed):
            raise  # each wrote its own status (interrupted, stopped, finished)
        except Exception as exc:  # a bug (in a method or the report): run.json says so, not "running"
            try:
                records.write_json(run_dir / "run.json", {**info, "status": "failed", "failed_at": now(),
                                                          "failed_because": error_line(exc)})
            except OSError:
                pass  # the disk refused: run.json keeps its last whole version
            raise


def _run_methods(spec, plan, run_dir, info, outcomes, echo, earlier_samples, table) -> Path:
    done = {o.method for o in outcomes}
    storage = info.get("tune_storage") or str(run_dir / "tune")
    if plan.task.prepare is not None and len(done) < len(spec.seeds) * len(spec.methods):
        echo("preparing the data (once, before any trial) ...")
        plan.task.prepare(plan.fixed_config, plan.task.space)
    writer = SummaryWriter(str(run_dir / "tensorboard" / "resources"))  # the monitor's timeline
    monitor_type = ClusterMonitor if spec.ray_address else ResourceMonitor  # a probe per node on a cluster
    monitor = monitor_type(plan.task.name, spec.monitor_interval, gpu=plan.gpu, writer=writer,
                           origin=run_origin(info), samples=earlier_samples)
    try:
        with monitor, InterruptGuard() as guard:  # the monitor stops with the run, also on Ctrl-C or an error
            for seed in spec.seeds:
                for searcher, scheduler in spec.methods:
                    method = Method(searcher, scheduler, seed)
                    if method in done:
                        continue
                    guard.check()
                    first_started = _first_start(info, run_dir, storage, method, echo)
                    total = expected_trials(plan, method)
                    progress = [] if spec.quiet else [Progress(method.name, total, plan.task.objective)]
                    outcome = run_method(plan, method, storage, monitor=monitor, first_started=first_started,
                                         callbacks=[*progress, FailureLines(method.name, plan.max_failures)])
                    guard.check()  # a method Ctrl-C ended early is not recorded: --resume continues it
                    outcomes.append(outcome)
                    write_method_run(run_dir, plan.task, outcome, bool(plan.gpus_per_trial), plan.gpus_per_trial)  # TensorBoard's view
                    if plan.keep_checkpoints == "best" and not is_uri(storage):  # the pick is scored: only the
                        # run's best keeps its weights (on a URI Tune's callback prunes within methods only)
                        keep_best_pick(run_dir, [o.summary for o in outcomes], plan.task.objective,
                                       keep=tuple(info.get("recommendation", {}).get("method", "").split(",")))
                    write_tables(run_dir, plan.task, outcomes, monitor)
    except (Interrupted, KeyboardInterrupt) as exc:
        info.update(status="interrupted", interrupted_at=now())
        records.write_json(run_dir / "run.json", info)
        raise Interrupted(f"{'stopped at once' if isinstance(exc, KeyboardInterrupt) else 'interrupted'}; "
                          f"{len(outcomes)} of {len(spec.seeds) * len(spec.methods)} methods finished. "
                          f"Continue with: {command()} --resume {shlex.quote(str(run_dir))}") from None
    except OSError as exc:
        storage_failed(exc, run_dir, info, len(spec.seeds) * len(spec.methods))
    finally:
        writer.close()
    try:
        # The tables were written after every method; only the monitor's last samples are new.
        records.write_csv(run_dir / "resources.csv", records.RESOURCE_COLUMNS, monitor.rows())
        build(run_dir)  # plots and the final summary.md
    except OSError as exc:
        storage_failed(exc, run_dir, info, len(outcomes))
    failed = [o.summary for o in outcomes if not o.summary.get("best_trial_id")]
    info.update(status="finished", finished_at=now(),
                methods_without_result=[method_name(s["searcher"], s["scheduler"], int(s["seed"])) for s in failed])
    records.write_json(run_dir / "run.json", info)
    table(format_table([o.summary for o in outcomes], display_columns(plan.task, bool(plan.time_budget_s))))
    if info.get("recommendation"):
        table("\n".join(recommended_lines(run_dir, info["recommendation"], [o.summary for o in outcomes], plan.task)))
    for line in next_steps(run_dir):
        echo(line)
    if failed:
        names = ", ".join(f"{method_label(s['searcher'], s['scheduler'])} seed {s['seed']}" for s in failed)
        raise RunFailed(f"{len(failed)} of {len(outcomes)} methods completed no trial ({names}); each trial's error "
                        f"is in {run_dir / 'trials.csv'} and its traceback in the trial's error.txt")
    return run_dir


def storage_failed(exc: OSError, run_dir: Path, info: dict, total: int):
    """Stop the run in one line where the storage refused a write (a full or read-only disk, a quota);
    any other OSError is a bug and keeps its traceback. Every file on disk is whole (the writers are
    atomic) and --resume continues from the methods whose summary row was written."""
    if not records.is_storage_error(exc):
        raise exc
    try:
        records.write_json(run_dir / "run.json", {**info, "status": "stopped", "stopped_at": now(),
                                                  "stopped_because": str(exc)})
    except OSError:
        pass  # the same disk: run.json keeps its last whole version, which --resume reads as well
    recorded = len(records.read_csv_rows(run_dir / "summary.csv"))  # what --resume keeps; the rest it continues
    raise StorageFailed(f"writing the run failed ({exc.strerror or exc}: {exc.filename or run_dir}); {recorded} of "
                        f"{total} methods are recorded and every file on disk is whole. Make room (or make it writable), "
                        f"then: {command()} --resume {shlex.quote(str(run_dir))}") from None


def _first_start(info: dict, run_dir: Path, storage: str, method: Method, echo) -> float | None:
    """When an interrupted method first started (it continues from Tune's state), or None for a
    method that starts now (recorded in run.json first, so a kill from here on can resume it)."""
    first_started = info["methods_started"].get(method.name)
    first_started = None if first_started is None else records.unix_time(first_started)
    if first_started is not None and not _restorable(f"{storage}/{method.name}", echo):
        first_started = None
    if first_started is None:
        info["methods_started"][method.name] = records.iso_time(time.time())
        records.write_json(run_dir / "run.json", info)
    echo(f"{'resuming' if first_started else 'tuning'} {method.name} ...")
    return first_started


def tune_storage(spec: ExperimentSpec, run_dir: Path) -> str:
    """Where Ray Tune keeps this run's method folders: the run folder's tune/, or with --storage
    <storage>/<task>/<run id>/tune, which a local (shared) --storage links tune/ to, so the
    run folder reads the same either way."""
    if spec.storage is None:
        return str(run_dir / "tune")
    root = f"{spec.storage.rstrip('/')}/{run_dir.parent.name}/{run_dir.name}/tune"
    if not is_uri(root):
        root = str(Path(root).absolute())
        Path(root).mkdir(parents=True, exist_ok=True)
        (run_dir / "tune").symlink_to(root, target_is_directory=True)
    return root


def _restorable(location: str, echo) -> bool:
    """Whether Tune can continue the method folder at ``location``; a local folder it cannot
    read (killed before Tune's first snapshot, or a truncated snapshot: ray issue 58179) is
    moved aside, never deleted, and the method starts again."""
    if is_uri(location):
        from ray import tune

        return tune.Tuner.can_restore(location)
    path = Path(location)
    if not path.exists():
        return False
    if can_restore(path):
        return True
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    echo(f"{path.name}: Tune's state cannot be read back; moved to {aside.name} and the method starts again")
    return False
