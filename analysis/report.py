"""The report of a run: ``summary.md`` (with regret to the grid and share of its compute) and
the plots under ``plots/``. ``python -m analysis <run folder>`` rebuilds both."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.budget import equal_compute_markdown
from analysis.load import Run, load_run
from analysis.stats import paired
from core import records
from core.rules import CONTROLS, Objective, method_label



def display_columns(run: Run) -> tuple[str, ...]:
    """summary.md's columns: the task's own metric (best_val_accuracy, best_val_rmse, ...), its test
    metrics, and the regret to the grid in the metric's unit (val_regret_pts for an accuracy)."""
    objective = run.objective
    return ("searcher", "scheduler", "seed", "n_trials", "n_failed", "n_oom", "n_repeats", "epochs_trained",
            objective.best_column, *records.test_columns(run.metrics),
            regret_column(objective), "grid_epochs_share", "grid_compute_share", "wall_seconds", "trial_seconds",
            "gpu_seconds", "mean_gpu_util", "peak_trial_gpu_mem_mb", "peak_card_gpu_mem_mb", "peak_rss_mb")


def regret_column(objective: Objective) -> str:
    return f"val_regret_{objective.regret_unit}"
PLOTS = ("anytime_wall.png", "anytime_compute.png", "cost_quality.png", "resources.png")


def uses_gpu(run: Run) -> bool:
    return bool(run.summary["gpu_seconds"].notna().any()) if len(run.summary) else False




def with_grid_comparison(summary: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Each method's regret to the grid's best validation value (``regret_column``: accuracy points
    for an accuracy, the metric's own units otherwise) and the
    share of the grid's compute it used, against the reference grid run named in
    ``grid_reference``: grid:fifo of the same seed (else grid:fifo's best seed); only where the run
    has no grid:fifo, grid:asha, which is early-stopped and so no full grid, named as such. NaN
    where the run has no grid. Two shares: ``grid_epochs_share`` (epochs trained, which a
    machine's load does not change; see REPRODUCIBLE for when they are the same run to run) and
    ``grid_compute_share`` (GPU-seconds, else trial-seconds: what it cost here)."""
    summary = summary.copy()
    grids = summary[summary["searcher"] == "grid"]
    fifo = grids[grids["scheduler"] == "fifo"]
    grid = fifo if len(fifo) else grids
    best, regret = objective.best_column, regret_column(objective)
    summary[regret] = np.nan
    summary["grid_epochs_share"] = np.nan
    summary["grid_compute_share"] = np.nan
    summary["grid_reference"] = None
    if grid.empty:
        return summary
    cost = "gpu_seconds" if summary["gpu_seconds"].notna().any() else "trial_seconds"
    for i, row in summary.iterrows():
        same_seed = grid[grid["seed"] == row["seed"]]
        reference = same_seed.iloc[0] if len(same_seed) else grid.loc[
            grid[best].idxmax() if objective.mode == "max" else grid[best].idxmin()]
        summary.loc[i, "grid_reference"] = f"grid:{reference['scheduler']} seed {reference['seed']}"
        summary.loc[i, regret] = objective.regret(reference[best], row[best])
        if reference["epochs_trained"] and reference["epochs_trained"] > 0:
            summary.loc[i, "grid_epochs_share"] = row["epochs_trained"] / reference["epochs_trained"]
        if reference[cost] and reference[cost] > 0:
            summary.loc[i, "grid_compute_share"] = row[cost] / reference[cost]
    return summary


def reproducibility(max_concurrent) -> str:
    """What of a run's table comes out the same when the same command runs again."""
    same = ("grid and random search under FIFO: the same configurations and epochs (and, on the CPU, the same "
            "numbers) whatever the concurrency")
    if max_concurrent == 1:
        return (f"Reproducible: {same}; at concurrency 1, every method's trials, epochs and picks. "
                "Not: seconds and resource figures, which move with the machine's load.")
    return (f"Reproducible: {same}. Not, at concurrency {max_concurrent or '> 1'}: which trials ASHA stops and "
            "what a model-based searcher suggests depend on the order in which parallel trials report, so their "
            "epochs_trained, grid_epochs_share and picks can differ between two runs of the same command; nor "
            "seconds and resource figures. Run with "
            "--max-concurrent 1 for a run that repeats exactly.")


def _fmt(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "-"
    if isinstance(value, (float, np.floating)):
        if column.endswith("seconds") or column.endswith("_mb") or column == "mean_gpu_util":
            return f"{value:.1f}"
        if column.endswith("_pts"):
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def format_table(rows: pd.DataFrame | list[dict], columns) -> str:
    rows = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(c, row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def control_comparisons(summary: pd.DataFrame, objective: Objective) -> list[dict]:
    """Each ASHA method against each control (CONTROLS), paired by seed: differences (method minus
    control, in ``objective.regret_unit``) of the pick's best validation value and its test value
    of the same metric, with n, IQR and Wilcoxon."""
    scale = objective.regret_scale
    by_method = {key: frame.set_index("seed") for key, frame in summary.groupby(["searcher", "scheduler"], sort=False)}
    rows = []
    for (searcher, scheduler), frame in by_method.items():
        if scheduler != "asha" or (searcher, scheduler) in CONTROLS:
            continue
        for control in CONTROLS:
            if control not in by_method:
                continue
            row = {"method": method_label(searcher, scheduler), "control": method_label(*control)}
            for name, column in (("val", objective.best_column), ("test", objective.test_column)):
                x, y = frame[column].align(by_method[control][column], join="inner")
                row[name] = paired(scale * x.astype(float), scale * y.astype(float))
            rows.append(row)
    return rows


def _paired_cell(stats: dict) -> str:
    if not stats["n"]:
        return "-"
    text = f"{stats['diff_median']:+.2f} [{stats['diff_q25']:+.2f}, {stats['diff_q75']:+.2f}]"
    return text + (f", p={stats['p']:.3f}" if stats["p"] is not None else ", no test (1 seed)")


def comparisons_markdown(summary: pd.DataFrame, objective: Objective) -> str:
    rows = control_comparisons(summary, objective)
    if not rows:
        return ""
    name, unit = objective.name, objective.regret_unit
    lines = ["## Each ASHA method against the controls (paired by seed)", "",
             f"| method | control | n seeds | val {name} diff ({unit}) | test {name} diff ({unit}) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['control']} | {r['val']['n']} | {_paired_cell(r['val'])} "
              f"| {_paired_cell(r['test'])} |" for r in rows]
    better = "higher" if objective.mode == "max" else "lower"
    lines += ["", "Cells: median difference (method minus control) [interquartile range] over seeds, and "
              f"Wilcoxon's signed-rank p (two-sided); {better} {name} is better. random:asha separates the "
              "searcher's effect from ASHA's.", ""]
    return "\n".join(lines)


def summary_markdown(run: Run) -> str:
    objective = run.objective
    summary = with_grid_comparison(run.summary, objective)
    cost = "GPU-seconds" if uses_gpu(run) else "trial-seconds"
    references = sorted(set(summary["grid_reference"].dropna())) if len(summary) else []
    reference = ", ".join(references) if references else "no grid in this run"
    if any(r.startswith("grid:asha") for r in references):
        reference += " (early-stopped: no full grid ran, so this is not the grid's best)"
    plots = "".join(f"![{name}](plots/{name})\n" for name in PLOTS if (run.path / "plots" / name).exists())
    return (
        f"# {run.task}: methods compared\n\n"
        f"{format_table(summary, display_columns(run))}\n\n"
        f"- {objective.best_column}: the selected configuration's best {objective.metric} ({objective.mode}imized); "
        "test_*: its best-validation weights scored on the test split (never seen by a searcher or scheduler).\n"
        f"- {regret_column(objective)}: how much worse the method's {objective.best_column} is than the reference "
        f"grid's, in {objective.regret_words} "
        f"(grid_reference names it: {reference}); grid_epochs_share: epochs the method trained over the grid's; "
        f"grid_compute_share: the method's {cost} over the grid's (moves with the machine's load).\n"
        f"- {reproducibility(run.info.get('resolved', {}).get('max_concurrent'))}\n"
        "- wall_seconds: the method's wall clock; trial_seconds: summed trial time (Tune's time_total_s: the trials' "
        "epochs, training and validation; not a worker's start-up or data loading, and a fresh worker's first epoch "
        "includes PyTorch's warm-up, so a method whose trials start on new workers shows more for the same epochs); "
        "gpu_seconds: trial time x GPU fraction (empty without a GPU); mean_gpu_util (%) and peak_card_gpu_mem_mb (the whole card, NVML), "
        "peak_trial_gpu_mem_mb (PyTorch's peak of the largest trial) and peak_rss_mb "
        "(driver plus Ray workers) from the resource monitor.\n"
        + (f"\n{comparisons_markdown(run.summary, objective)}" if len(run.summary) else "")
        + (f"\n{equal_compute_markdown(run)}" if len(run.summary) else "")
        + (f"\n{plots}" if plots else ""))


def write_summary(run_dir) -> None:
    run = load_run(run_dir)
    records.write_text(Path(run_dir) / "summary.md", summary_markdown(run))


# --- plots ------------------------------------------------------------------------------
def anytime(curves: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """The best validation value so far (in the objective's direction) in wall-clock order, one
    step curve per method and seed."""
    frame = curves.sort_values("wall_seconds").copy()
    groups = frame.groupby(list(records.METHOD_COLUMNS))[objective.metric]
    frame["best_so_far"] = groups.cummax() if objective.mode == "max" else groups.cummin()
    return frame


def _band(groups, x: str, points: int = 200, start: float | None = None):
    """Mean, min and max across seeds of step curves, on one x grid (log-spaced from ``start`` where given)."""
    ends = [g[x].max() for _, g in groups]
    grid = np.geomspace(start, max(max(ends), start * 1.01), points) if start else np.linspace(0, max(ends), points)
    values = []
    for _, g in groups:
        xs, ys = g[x].to_numpy(), g["best_so_far"].to_numpy()
        idx = np.searchsorted(xs, grid, side="right") - 1
        values.append(np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan))
    values = np.array(values)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a first epoch
            return grid, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _finish(fig, ax, path: Path, legend: str = "lower right") -> None:
    """Grid, legend, save as PNG and free the figure. ``legend="outside"``: right of the axes, where it
    hides no point."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    if legend == "outside":
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    else:
        ax.legend(loc=legend)
    fig.tight_layout()
    records.write_figure(fig, path, dpi=100)
    plt.close(fig)


REGRET_LINTHRESH = 0.1  # in the regret's unit: below this the anytime plot's y axis is linear (0 included)


def plot_anytime(run: Run, x: str, xlabel: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    objective = run.objective
    frame = anytime(run.curves, objective)
    if x == "compute":
        gpu_fraction = run.info.get("resolved", {}).get("resources", {}).get("gpu") or 0
        scale = gpu_fraction if uses_gpu(run) and gpu_fraction else 1.0
        frame["compute"] = frame.groupby(list(records.METHOD_COLUMNS))["epoch_seconds"].cumsum() * scale
    # A log x-axis from the first report of any method: the early decisions, where methods differ most,
    # took the first 10-15% of a linear axis.
    positive = frame.loc[frame[x] > 0, x]
    start = float(positive.min()) if len(positive) else None
    bands = []
    for searcher, scheduler in run.methods:
        mine = frame[(frame["searcher"] == searcher) & (frame["scheduler"] == scheduler)]
        groups = [(seed, g.sort_values(x)) for seed, g in mine.groupby("seed")]
        if groups:
            # the grid runs the same trials whatever the seed (only their order differs): one line, no band
            seeds = 1 if searcher == "grid" else len(groups)
            label = f"{method_label(searcher, scheduler)} ({len(groups)} seed{'s' * (len(groups) > 1)}"
            bands.append((label + (", same trials: no band" if seeds < len(groups) else "") + ")", seeds,
                          *_band(groups, x, start=start)))
    # Regret to the best value any method reached, on a symmetric log scale (as the LCBench plot):
    # in accuracy the first picks (0.55 on Breast Cancer) stretched the axis and the methods, a
    # point or two apart near the top, overlapped in its top sliver.
    ends = [v for *_, low, high in bands for v in (low, high) if np.isfinite(v).any()]
    best = (np.nanmax if objective.mode == "max" else np.nanmin)(np.concatenate(ends)) if ends else np.nan
    for label, n_seeds, grid, mean, low, high in bands:
        line, = ax.plot(grid, objective.regret(best, mean), drawstyle="steps-post", label=label)
        if n_seeds > 1:
            ax.fill_between(grid, objective.regret(best, high), objective.regret(best, low), step="post", alpha=0.2,
                            color=line.get_color())
    ax.set_yscale("symlog", linthresh=REGRET_LINTHRESH)
    if start:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel + (", log scale" if start else ""))
    ax.set_ylabel(f"regret to the run's best {objective.metric}\n({objective.regret_words}; symlog, linear below "
                  f"{REGRET_LINTHRESH})")
    ax.set_title(f"{run.task}: anytime performance (mean, band: min-max over seeds)")
    _finish(fig, ax, path, legend="upper right")  # regret curves fall towards the lower right


def plot_cost_quality(run: Run, path: Path) -> None:
    import matplotlib.pyplot as plt

    cost = "gpu_seconds" if uses_gpu(run) else "trial_seconds"
    # the pick's test score; its validation value where no pick was scored (a trainable without a test split)
    quality = run.objective.test_column
    if quality not in run.summary or not run.summary[quality].notna().any():
        quality = run.objective.best_column
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for (searcher, scheduler), rows in run.summary.groupby(["searcher", "scheduler"], sort=False):
        ax.scatter(rows[cost], rows[quality], s=50, label=method_label(searcher, scheduler), alpha=0.8)
    # log scale only where every cost is positive: a run whose trials all failed costs 0 (it
    # must still get its report, not a matplotlib error)
    log = bool((pd.to_numeric(run.summary[cost], errors="coerce") > 0).all()) and run.summary[quality].notna().any()
    ax.set_xscale("log" if log else "linear")
    if log:
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"total cost ({cost.replace('_', '-')}{', log scale' if log else ''})")
    ax.set_ylabel(f"{quality} of the selected configuration"
                  + (" (lower is better)" if run.objective.mode == "min" else ""))
    ax.set_title("quality against cost, one point per method and seed")
    _finish(fig, ax, path, legend="outside")


def plain_log_ticks(axis) -> None:
    """Ticks at 1, 2 and 5 per decade, written plainly, and no minor labels: a log axis spanning
    less than a decade otherwise labels every minor tick (2x10^2, 3x10^2, ...) and they overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_resources(run: Run, path: Path) -> None:
    import matplotlib.pyplot as plt

    res = run.resources
    panels = [("cpu_percent", "CPU (% of one core)"), ("rss_mb", "resident memory (MiB)")]
    if len(res) and res["gpu_util"].notna().any():
        panels = [("gpu_util", "GPU utilization (%)"), ("gpu_mem_mb", "GPU memory (MiB)")] + panels
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), sharex=True, squeeze=False)
    spans = res.dropna(subset=["searcher"]).groupby(["searcher", "scheduler", "seed"], sort=False)["wall_seconds"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    nodes = list(dict.fromkeys(res["node"].dropna())) if "node" in res else []
    for ax, (column, label) in zip(axes[:, 0], panels):
        if len(nodes) > 1:  # a cluster: one line per node (and card)
            for (node, gpu), rows in res.dropna(subset=[column]).groupby(["node", res["gpu"].fillna(-1)], sort=False):
                ax.plot(rows["wall_seconds"], rows[column], lw=1,
                        label=f"node {str(node)[:8]}" + (f" gpu {int(gpu)}" if gpu >= 0 else ""))
        else:
            ax.plot(res["wall_seconds"], res[column], lw=1, color="black")
        for i, ((searcher, scheduler, seed), times) in enumerate(spans):
            ax.axvspan(times.min(), times.max(), alpha=0.15, color=colors[i % len(colors)],
                       label=f"{method_label(searcher, scheduler)} s{int(seed)}" if column == panels[0][0] else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("resources over the run (shaded: the method running)")
    if len(spans):
        axes[0, 0].legend(loc="upper left", fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("wall-clock seconds since the monitor started")
    fig.tight_layout()
    records.write_figure(fig, path, dpi=100)
    plt.close(fig)


def build(run_dir) -> Run:
    """Write ``plots/*.png`` and ``summary.md`` for a run folder; returns the loaded run."""
    import matplotlib

    matplotlib.use("Agg")
    run = load_run(run_dir)
    plots = Path(run_dir) / "plots"
    plots.mkdir(exist_ok=True)
    compute = "GPU-seconds" if uses_gpu(run) else "trial-seconds (summed trial time)"
    if len(run.curves):
        plot_anytime(run, "wall_seconds", "wall-clock seconds since the method started", plots / "anytime_wall.png")
        plot_anytime(run, "compute", f"compute spent: {compute}", plots / "anytime_compute.png")
    if len(run.summary):
        plot_cost_quality(run, plots / "cost_quality.png")
    if len(run.resources):
        plot_resources(run, plots / "resources.png")
    records.write_text(Path(run_dir) / "summary.md", summary_markdown(run))
    return run
