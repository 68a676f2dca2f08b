"""What a run decides and checks before its folder exists: a user's task code against its
declaration, the GPU share its trials get, and with ``--time-budget`` or ``--methods recommended``
the grid's estimated compute, the budget's share of it and the method the evidence picks."""

from __future__ import annotations

import dataclasses

from experiments import packing
from core.cli import format_duration
from experiments.collect import error_line
from searchers import NEVER_REPEAT
from experiments.spec import RECOMMENDED_METHOD, ExperimentSpec, SpecError, resolve_recommended


def gpu_share_line(spec: ExperimentSpec, task, resources: dict, gpu) -> str:
    """Where the trials train and with how much of the card, and where that share came from."""
    card = f"GPU {gpu.index} ({gpu.name})" if gpu is not None else "the cluster's GPUs"
    if spec.gpus_per_trial == packing.AUTO:
        return f"trials train on {card}, each with the share its memory class measured (above)"
    source = "--gpus-per-trial" if spec.gpus_per_trial is not None else f"task {task.name}'s default"
    return (f"trials train on {card}, {resources['gpu']:g} of it each ({source}; --gpus-per-trial 0 keeps them "
            "on the CPU)")


def check_task_code(task, options) -> None:
    """SpecError in one line where a user's task fails before training: its data, its model or an
    evaluation without a declared metric (trainables.base.check_evaluation, in this process, on the
    CPU, one configuration with the task's probe_options). The built-in tasks are tested instead."""
    from trainables.base import check_evaluation

    try:
        check_evaluation(task.load_trainable(), packing.probe_config(task, options, {}))
    except Exception as exc:
        raise SpecError(f"task {task.name} failed its check before the first method (one configuration, untrained, "
                        f"evaluated on the validation split): {type(exc).__name__}: {error_line(exc)}") from None


def plan_budget(spec: ExperimentSpec, task, options, resources: dict, shares: dict, num_samples: int,
                say) -> tuple[ExperimentSpec, dict]:
    """With --time-budget: the grid's compute estimated (experiments.estimate), SpecError for a budget
    below one epoch of the cheapest configuration. With ``recommended`` among the methods: the method
    for the budget's share of the grid (experiments.recommend; without a time budget, the share is a
    sampling method's trials over the grid's configurations), put in its place. ``say`` prints the
    estimate and the one line of why. Returns the spec with concrete methods and run.json's record."""
    from experiments.estimate import estimate
    from experiments.recommend import recommend

    record = {}
    fraction = None
    if spec.time_budget is not None:
        found = estimate(task, options, resources, shares)
        unit = found.unit.replace("_", "-")
        if spec.time_budget < found.cheapest_epoch:
            raise SpecError(f"--time-budget {format_duration(spec.time_budget)} is below one epoch of the cheapest "
                            f"configuration ({found.cheapest_epoch:.3g} {unit}"
                            f"{', measured' if found.measured else ', declared'}): no method could train anything")
        fraction = spec.time_budget / found.grid_compute
        record["estimate"] = found.record()
        epochs = sum(int(c[task.epochs_param]) for c in task.configurations())
        say(f"the grid: {task.grid_size} configurations, {epochs} epochs, about {found.grid_compute:,.0f} {unit} "
            f"({'one epoch per memory class measured' if found.measured else 'the task declares its epoch costs'}); "
            f"--time-budget {format_duration(spec.time_budget)} is {fraction:.2%} of it, for each method")
    if RECOMMENDED_METHOD in spec.methods:
        if fraction is None:
            fraction = min(1.0, num_samples / task.grid_size)
            basis = f"{num_samples} trials of the grid's {task.grid_size} configurations"
        else:
            basis = f"--time-budget {format_duration(spec.time_budget)} over the estimate"
        chosen = recommend(fraction)
        spec = dataclasses.replace(spec, methods=resolve_recommended(spec.methods, (chosen.searcher, chosen.scheduler)))
        record["recommendation"] = {**dataclasses.asdict(chosen), "fraction": fraction}
        say(f"recommended: {chosen.why(fraction, basis)}")
    return spec, record


def probe_shares(task, options, resources: dict, echo) -> tuple[dict, dict]:
    """--gpus-per-trial auto: every memory class measured alone on the card (experiments.packing),
    one line with the shares; the run's resources then name the largest share (what scoring holds).
    A probe that fails stops the run in one line, before the run folder."""
    import ray

    try:
        probed = packing.probe(task, options, resources["cpu"])
    except (ray.exceptions.RayError, TimeoutError) as exc:  # a Ray task's error: its cause's last line
        raise SpecError(f"the GPU memory probe of --gpus-per-trial auto failed: {str(exc).strip().splitlines()[-1]}") \
            from None
    names = ",".join(task.memory_params)
    echo(f"GPU share by measured memory ({names}): "
         + "; ".join(f"{key}: {numbers['share']:g} ({numbers['need_mb']:.0f} MiB)" for key, numbers in probed.items()))
    return probed, {**resources, "gpu": max(numbers["share"] for numbers in probed.values())}


def samples_note(spec: ExperimentSpec, task, num_samples: int) -> str | None:
    """One line where --num-samples is above the space's size: what each sampling searcher does then."""
    sampling = sorted({s for s, _ in spec.methods if s != "grid"})
    if num_samples <= task.grid_size or not sampling or (spec.time_budget and spec.num_samples is None):
        # (with --time-budget the trials are the budget's; num_samples is only a guard then)
        return None
    once = [s for s in sampling if s in NEVER_REPEAT]
    repeat = [s for s in sampling if s not in NEVER_REPEAT]
    return (f"--num-samples {num_samples} is above the {task.grid_size} configurations of the space: "
            + (f"{', '.join(once)} tr{'ies' if len(once) == 1 else 'y'} each configuration once (at most that many "
               "trials)" if once else "")
            + ("; " if once and repeat else "")
            + (f"{', '.join(repeat)} draw with replacement and repeat configurations (n_repeats in summary.csv)"
               if repeat else ""))
