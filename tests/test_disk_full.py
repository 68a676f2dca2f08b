"""A full or read-only disk: the run stops in one line, every file already written parses, and
--resume continues once there is room. The write error is injected into the atomic writer
(core.records) with the errno a full disk gives, the first time summary.csv is written."""

from __future__ import annotations

import errno
import json

import pandas as pd
import pytest

import run_all
from core import records


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(ray_session, tmp_path, monkeypatch, capsys):
    real = records._write_atomic
    refused = []

    def full_disk(path, text):
        if path.name == "summary.csv" and not refused:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(records, "_write_atomic", full_disk)
    results = tmp_path / "results"
    argv = ["--task", "breast_cancer", "--budget", "smoke", "--methods", "grid:fifo,random:fifo",
            "--results-dir", str(results), "--quiet"]
    assert run_all.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "0 of 2 methods are recorded" in err[0], err
    (run_dir,) = (results / "breast_cancer").iterdir()
    assert f"--resume {run_dir}" in err[0]
    # every file on disk is whole: no temporary file left, each table and run.json parses
    assert not [p for p in run_dir.rglob(".*.tmp")] and not [p for p in run_dir.glob(".*.png")]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "stopped" and "No space left on device" in info["stopped_because"]
    for name in ("trials.csv", "curves.csv"):
        assert len(pd.read_csv(run_dir / name))  # the first method's rows, written before summary.csv
    assert not (run_dir / "summary.csv").exists()

    # room again: --resume runs both methods (the first from its finished Tune folder) and finishes
    monkeypatch.setattr(records, "_write_atomic", real)
    assert run_all.main(["--resume", str(run_dir), "--quiet"]) == 0
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(zip(summary["searcher"], summary["scheduler"])) == [("grid", "fifo"), ("random", "fifo")]
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == len(trials.drop_duplicates(["searcher", "scheduler", "seed", "trial_id"]))  # none twice
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_a_plot_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = tmp_path / "plot.png"
    records.write_figure(fig, path)
    before = path.read_bytes()

    def refused(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fig, "savefig", refused)
    try:
        records.write_figure(fig, path)
    except OSError:
        pass
    plt.close(fig)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
