"""A task every trial of which raises (the analytic task with every x set to fail), for the
tests of a run with nothing to show."""

from __future__ import annotations

import dataclasses

from tests.analytic import TASK as ANALYTIC

TASK = dataclasses.replace(ANALYTIC, name="analytic_fail",
                           space={"x": (1, 2), "learning_rate": (1e-3,), "act": ("relu",), "epochs": (2,)},
                           options={"fail_x": (1, 2)})
