"""The analytic task as a task file with declared epoch costs (its made-up epoch_seconds), so a
--time-budget run of it is exact and needs no probe; each epoch sleeps a little, so a test can kill
it mid-method."""

from __future__ import annotations

import dataclasses

from tests.analytic import TASK as ANALYTIC


def epoch_seconds(config) -> float:
    """What AnalyticTrainable reports as an epoch's seconds (tests/analytic.py)."""
    return 0.1 * config["x"] + (0.05 if config["act"] == "tanh" else 0.0)


TASK = dataclasses.replace(ANALYTIC, name="analytic_budget", epoch_seconds=epoch_seconds, options={"sleep_s": 0.1})
