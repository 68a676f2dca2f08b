"""Our reader of YAHPO Gym's LCBench surrogate gives what yahpo-gym 1.0.2 itself gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.replay.lcbench import CONT_NAMES, SURROGATE_DIR, Y_NAMES, Surrogate
from tests.conftest import ROOT

REFERENCE = json.loads((ROOT / "tests" / "data" / "yahpo_lcbench_reference.json").read_text())


def test_the_surrogate_ships_with_its_license():
    assert {"model.onnx", "encoding.json", "config_space.json", "LICENSE-2.0.txt"} <= {p.name for p in SURROGATE_DIR.iterdir()}


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['config']['OpenML_task_id']}-e{c['config']['epoch']}")
def test_matches_yahpo_gym(case):
    config = case["config"]
    out = Surrogate().predict(config["OpenML_task_id"], np.array([[config[n] for n in CONT_NAMES]]))
    for name in Y_NAMES:
        assert out[name][0] == pytest.approx(case["y"][name], rel=1e-5, abs=1e-6), name


def test_thirty_four_data_sets_and_an_unknown_one_is_refused():
    surrogate = Surrogate()
    assert len(surrogate.tasks) == 34
    with pytest.raises(ValueError, match="unknown LCBench task"):
        surrogate.predict("42", np.zeros((1, 8)))
