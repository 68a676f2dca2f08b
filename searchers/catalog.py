"""What ``--list-methods`` prints: each method a run offers in one line, and the budgets the LCBench
evidence recommends a method for (from experiments.recommend's generated table, so a new verdict
changes the list without a code change)."""

from __future__ import annotations

from searchers import SCHEDULERS, SEARCHERS

SEARCHER_LINES = {
    "grid": "every configuration of the grid, once (the baseline)",
    "random": "configurations drawn at random from the grid's values, with repeats (Ray's random search)",
    "shuffle": "the grid in a seeded random order, no configuration twice",
    "hyperopt": "HyperOpt's TPE: a density model of good and bad configurations",
    "bayesopt": "Bayesian optimization: a Gaussian process and expected improvement, no configuration twice",
    "rungbo": "BayesOpt fitted at ASHA's highest well-populated rung (learns from stopped trials)",
    "dpl": "DPL's power-law ensemble of learning curves picks new configurations (runs under freeze_thaw only)",
}
SCHEDULER_LINES = {
    "fifo": "every trial trains all its epochs",
    "asha": "ASHA: a trial stops at a rung unless in its top 1/eta (Li et al.)",
    "promotion": "promotion ASHA: a trial pauses at a rung (training state kept) and resumes once in the top 1/eta",
    "promotion_anytime": "promotion, and free workers resume the best paused trials when nothing new is left",
    "hyperband": "asynchronous Hyperband: ASHA over every bracket of grace periods",
    "hyperband_promotion": "asynchronous Hyperband with pausing instead of stopping",
    "freeze_thaw": "every trial pausable; at each free worker the dpl model picks one more epoch of a paused trial "
                   "or a new configuration",
}


def budget_ranges(table=None) -> list[tuple[str, float, float | None]]:
    """(method, from %, up to % or None) for each run of neighbouring rows naming the same method."""
    from experiments.recommend import load_table

    rows = table if table is not None else load_table()
    ranges = []
    for i, row in enumerate(rows):
        if ranges and ranges[-1][0] == row.method:
            continue
        end = next((r.budget_pct for r in rows[i:] if r.method != row.method), None)
        ranges.append((row.method, row.budget_pct if i else 0.0, end))
    return ranges


def method_lines() -> list[str]:
    lines = ["recommended: the method the LCBench evidence (34 data sets x 10 seeds, docs/results/lcbench.md) picks "
             "for the budget, as a share of the grid's compute:"]
    for method, start, end in budget_ranges():
        span = f"below {end:g}%" if not start else (f"{start:g}% to {end:g}%" if end else f"{start:g}% and more")
        lines.append(f"  {method:<28} {span}")
    lines.append("searchers (searcher:scheduler; a searcher alone gets fifo for grid, random and shuffle, asha otherwise):")
    lines += [f"  {name:<10} {SEARCHER_LINES[name]}" for name in SEARCHERS]
    lines.append("schedulers:")
    lines += [f"  {name:<20} {SCHEDULER_LINES[name]}" for name in SCHEDULERS]
    return lines
