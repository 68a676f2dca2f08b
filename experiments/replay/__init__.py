"""Replay benchmark: rerun every searcher and scheduler many times on a recorded grid run.

A grid run with the fifo scheduler has measured every configuration's whole learning curve
(``curves.csv``: validation metrics and seconds per epoch). Replaying those curves, as the
tabular benchmarks do (HPOBench, LCBench, NAS-Bench-201; Syne Tune's simulator backend),
lets each method run over many seeds in seconds::

    python -m experiments.replay <grid run folder> --seeds 20 [--methods ...] [--out <folder>]
    python -m experiments.replay --builtin breast_cancer --out <folder>

The package, along its seams: ``table`` (a recorded grid run as a Table), ``simulator``
(one method on the simulated clock; many over processes), ``stats`` (regret, reach, paired
tests), ``report`` (files and plot), ``cli`` (the command line). This module re-exports their
public names.

How a replay runs (``simulator.replay_method``):

* The searchers and schedulers are the objects real runs use (``searchers.SEARCHERS`` and
  ``SCHEDULERS``), wrapped as ``tune.run`` wraps them (a ``Searcher`` in a
  ``ConcurrencyLimiter`` inside a ``SearchGenerator``; no searcher: a
  ``BasicVariantGenerator``), and they create Ray Tune ``Trial`` objects the same way.
* Ray's ``TuneController`` is replaced by a discrete-event loop on a simulated clock: each
  trial's epoch takes its recorded ``epoch_seconds``; at most ``max_concurrent`` trials run at
  once (the original run's concurrency); results reach the scheduler and searcher in
  simulated-time order, with the controller's call order (a ``done`` result stops the trial
  without ``on_trial_result``; a ``STOP`` decision is not shown to the searcher's
  ``on_trial_result``; both then get ``on_trial_complete`` with the last result; freed slots
  are refilled). Nothing reads the machine's clock, so the decisions depend only on simulated
  time, and a replay is a pure function of (table, method, seed).
* Where the grid was run with several training seeds, each replayed trial draws one of them
  (seeded) and follows that seed's curve.
* A trial reports exactly the recorded validation numbers; the test columns are never shown
  to searchers or schedulers, only used to score what a method selects.

Statistics (``summarize``), over replay seeds, per method: regret to the grid's best
validation accuracy (accuracy points) at 5, 10, 25 and 50% of the grid's compute (the sum of
all its configurations' epoch seconds); the compute needed to come within 0.5 points; the
test accuracy of the selected model against the grid's selection; a Wilcoxon signed-rank
test against each control, random search under fifo and under asha, paired by seed, with the
matched-pairs rank-biserial correlation as effect size. The "value" of a model is the mean over the table's training
seeds of its best validation value (the table's metric, in its direction) up to the epochs it trained (with one training seed:
exactly what it reported), so the regret is never negative.
"""

from experiments.replay.cli import BUILTIN, builtin_tables, main, parse_args, with_asha_settings
from experiments.replay.report import summary_markdown, write_results
from experiments.replay.stats import (ANYTIME_POINTS, CONTROLS, REACH_POINTS, REGRET_FRACTIONS, anytime_curves,
                                      compute_to_reach, regret_at, regret_column, seed_row, selected_test_value,
                                      summarize, summary_columns)
from experiments.replay.table import Curve, ReplayError, Table, load_table, table_from_frames

_SIMULATOR = ("ReplayRun", "ReplayedTrial", "replay_all", "replay_method")


def __getattr__(name):
    # Deliberately lazy (PEP 562): the simulator imports Ray, and `python -m experiments.replay`
    # runs this file first, so --help and bad input would otherwise wait for Ray.
    if name in _SIMULATOR:
        from experiments.replay import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ANYTIME_POINTS", "BUILTIN", "CONTROLS", "Curve", "REACH_POINTS", "REGRET_FRACTIONS", "ReplayError",
           "ReplayRun", "ReplayedTrial", "Table", "anytime_curves", "builtin_tables",
           "compute_to_reach", "load_table", "main", "parse_args", "regret_at", "regret_column", "replay_all",
           "replay_method", "seed_row", "selected_test_value", "summarize", "summary_columns", "summary_markdown",
           "table_from_frames",
           "with_asha_settings", "write_results"]
