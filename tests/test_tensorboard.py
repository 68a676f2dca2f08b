"""`tensorboard --logdir <run folder>` works after the README's install, on a real TensorBoard
server: its HTTP API lists every trial, serves their per-epoch validation accuracy, and the
experiment's HParams (written by Ray Tune's TensorBoard logger)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, data: bytes | None = None):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_trials_scalars_and_hparams(smoke_run, tmp_path):
    command = Path(sys.executable).parent / "tensorboard"
    command = str(command) if command.exists() else shutil.which("tensorboard")
    assert command, "the tensorboard command is not installed with the package"
    port = free_port()
    log = open(tmp_path / "tensorboard.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([command, "--logdir", str(smoke_run), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        trials = pd.read_csv(smoke_run / "trials.csv")
        expected = {f"tune/{s}-{c}-s{seed}/trial_{t}" for s, c, seed, t in
                    trials[["searcher", "scheduler", "seed", "trial_id"]].itertuples(index=False)}
        runs, deadline = [], time.time() + 90
        while time.time() < deadline and not expected <= set(runs):
            try:
                runs = get(f"{base}/data/runs")
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        assert expected <= set(runs), (sorted(expected - set(runs))[:3], (tmp_path / "tensorboard.log").read_text()[-500:])
        assert "tensorboard/resources" in runs  # the monitor's timeline
        run = sorted(expected)[0]
        query = urllib.parse.urlencode({"run": run, "tag": "ray/tune/val_accuracy"})
        points = get(f"{base}/data/plugin/scalars/scalars?{query}")
        curves = pd.read_csv(smoke_run / "curves.csv")
        trial_id = run.rsplit("trial_", 1)[1]
        recorded = curves[curves["trial_id"] == trial_id].sort_values("epoch")["val_accuracy"].tolist()
        assert [round(p[2], 5) for p in points] == [round(v, 5) for v in recorded]  # one point per epoch
        # the hyperparameters the smoke space varies (TensorBoard may leave out the constant ones)
        wanted, names = {"learning_rate", "num_epochs", "hidden_layers"}, set()
        deadline = time.time() + 90
        while time.time() < deadline and not wanted <= names:  # TensorBoard loads the event files lazily
            hparams = get(f"{base}/data/plugin/hparams/experiment", data=json.dumps({"experimentName": ""}).encode())
            names = {h["name"] for h in hparams["hparamInfos"]}
            time.sleep(0.5)
        assert wanted <= names
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_tensorboard_has_one_run_per_method_with_its_best_so_far(smoke_run):
    """The first screen of `tensorboard --logdir <run>/tensorboard`: a run per method, not per trial."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = pd.read_csv(smoke_run / "summary.csv")
    names = {f"{s}-{c}-s{seed}" for s, c, seed in zip(summary["searcher"], summary["scheduler"], summary["seed"])}
    runs = {p.name: p for p in (smoke_run / "tensorboard" / "methods").iterdir()}
    assert set(runs) == names
    curves = pd.read_csv(smoke_run / "curves.csv")
    for name, folder in runs.items():
        events = EventAccumulator(str(folder))
        events.Reload()
        best = [e.value for e in events.Scalars("method/best_val_accuracy_by_epochs")]
        searcher, scheduler, seed = name.split("-")
        mine = curves[(curves["searcher"] == searcher) & (curves["scheduler"] == scheduler)]
        assert best == sorted(best) and best[-1] == pytest.approx(mine["val_accuracy"].max(), abs=1e-6)
        assert len(best) == len(mine)  # one point per epoch the method trained
