"""One TensorBoard run per method: ``tensorboard/methods/<method>`` holds the method's best validation
value so far, by epochs trained and by compute spent (the --time-budget unit), so the first screen
of ``tensorboard --logdir <run>/tensorboard`` compares methods, not hundreds of trials (each trial's
own curves stay under ``tune/<method>/trial_<id>``)."""

from __future__ import annotations

from pathlib import Path

from tensorboardX import SummaryWriter

from core.rules import epoch_compute


def write_method_run(run_dir: Path, task, outcome, on_gpu: bool = False, default_share: float = 0.0) -> None:
    objective = task.objective
    name = outcome.method.name
    rows = sorted(outcome.curves, key=lambda c: c["wall_seconds"])
    costs = epoch_compute(rows, outcome.trials, on_gpu, default_share)
    writer = SummaryWriter(str(Path(run_dir) / "tensorboard" / "methods" / name))
    try:
        best, epochs, compute = None, 0, 0.0
        for row, cost in zip(rows, costs):
            value = row.get(objective.metric)
            epochs += 1
            compute += cost
            if value is None:
                continue
            if objective.is_better(value, best):
                best = value
            writer.add_scalar(f"method/best_{objective.metric}_by_epochs", best, epochs)
            # steps are integers: compute in milliseconds
            writer.add_scalar(f"method/best_{objective.metric}_by_compute_ms", best, int(round(compute * 1000)))
    finally:
        writer.close()
