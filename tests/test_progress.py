"""What a user sees while a run goes on (experiments/progress.py) and at its end."""

from __future__ import annotations

import io
from types import SimpleNamespace

from experiments.progress import PLAIN_INTERVAL_S, Progress
from core.rules import Objective


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def trial(trial_id):
    return SimpleNamespace(trial_id=trial_id)


def test_plain_lines_count_right_and_come_at_most_every_ten_seconds():
    out, clock = io.StringIO(), Clock()
    progress = Progress("grid-fifo-s0", total=4, objective=Objective(), plain=True, clock=clock, out=out)
    progress.on_step_end(0, [])  # the first line at once
    for i in range(2):
        progress.on_trial_start(0, [], trial(f"t{i}"))
    progress.on_trial_result(0, [], trial("t0"), {"val_accuracy": 0.8})
    progress.on_trial_result(0, [], trial("t1"), {"val_accuracy": 0.9})
    clock.now += 1.0
    progress.on_step_end(0, [])  # a second later: no new line
    progress.on_trial_complete(0, [], trial("t0"))
    progress.on_trial_error(0, [], trial("t1"))
    clock.now += PLAIN_INTERVAL_S
    progress.on_step_end(0, [])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1] == ("grid-fifo-s0: 2/4 trials done, 0 running, 2 epochs, 1 errors, best val_accuracy 0.9000 (t1), "
                        "elapsed 0m11s, left ~0m11s")
    progress.on_experiment_end([])  # and one at the method's end, whatever the interval
    assert len(out.getvalue().splitlines()) == 3


def test_on_a_terminal_it_is_one_live_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    progress = Progress("random-asha-s0", total=3, objective=Objective(), clock=Clock(), out=out)
    progress.on_trial_start(0, [], trial("a"))
    progress.on_trial_result(0, [], trial("a"), {"val_accuracy": 0.7})
    progress.on_trial_complete(0, [], trial("a"))
    progress.on_step_end(0, [])
    progress.on_experiment_end([])
    text = out.getvalue()
    assert "random-asha-s0" in text and "1/3" in text and "best val_accuracy 0.7000 (a)" in text
    assert "\r" in text and text.count("\n") <= 1  # redrawn in place, not a line per update


def test_it_pickles_without_its_stream_for_tunes_snapshots():
    import pickle

    progress = Progress("m", total=1, objective=Objective(), plain=False, clock=Clock(), out=io.StringIO())
    progress.on_step_end(0, [])
    restored = pickle.loads(pickle.dumps(progress))
    assert restored.total == 1 and restored._bar is None


def test_on_ties_the_live_line_names_the_trial_the_summary_picks():
    """core.rules: equal best values go to the trial trained longest, then to the one started first."""
    from core.rules import select_trial

    out = io.StringIO()
    progress = Progress("m", total=3, objective=Objective(), plain=True, clock=Clock(), out=out)
    for t in ("a", "b", "c"):
        progress.on_trial_start(0, [], trial(t))
    progress.on_trial_result(0, [], trial("a"), {"val_accuracy": 0.9, "epoch": 1})
    progress.on_trial_result(0, [], trial("b"), {"val_accuracy": 0.9, "epoch": 1})
    assert progress.best == (0.9, "a")  # same value and epochs: the first started
    progress.on_trial_result(0, [], trial("b"), {"val_accuracy": 0.85, "epoch": 2})
    assert progress.best == (0.9, "b")  # the same best value, trained longer
    rows = [{"trial_id": "a", "status": "completed", "best_val_accuracy": 0.9, "epochs": 1},
            {"trial_id": "b", "status": "completed", "best_val_accuracy": 0.9, "epochs": 2}]
    assert select_trial(rows, Objective())["trial_id"] == progress.best[1]


def test_a_terminal_without_width_gets_plain_lines(monkeypatch):
    import os
    import shutil

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((0, 0)))
    out = Terminal()
    progress = Progress("m", total=1, objective=Objective(), clock=Clock(), out=out)
    progress.on_step_end(0, [])
    assert out.getvalue().startswith("m: 0/1 trials done")  # a line, not a bar of width 0


def test_only_the_upload_race_on_a_renamed_state_file_is_dropped():
    """benchmarks/tune_state_race.py reproduces it: the upload misses `.<uuid>-tmp-<state file>`,
    renamed by the next snapshot. Any other failed upload is shown."""
    import logging

    from experiments.console import RayNoise

    def record(exc):
        try:
            raise exc
        except OSError:
            import sys

            info = sys.exc_info()
        return logging.LogRecord("ray.tune.execution.experiment_state", logging.ERROR, __file__, 1,
                                 "Saving experiment state to storage at '/r/tune/grid-fifo-s0' failed with exception: ",
                                 None, info)

    race = FileNotFoundError(2, "Failed to open local file '/tmp/ray/session/artifacts/x/driver_artifacts/"
                                ".0a548cdf-a33d-4188-ba4d-b155f31c424e-tmp-basic-variant-state-2026-11-30_12-22-54.json'")
    other = FileNotFoundError(2, "Failed to open local file '/tmp/ray/session/artifacts/x/driver_artifacts/"
                                 "experiment_state-2026-11-30_12-22-54.json'")
    full = OSError(28, "No space left on device")
    assert not RayNoise().filter(record(race))
    assert RayNoise().filter(record(other)) and RayNoise().filter(record(full))


def test_a_quiet_run_does_not_silence_the_next():
    """--quiet mutes progress for its own run only (a quiet run in a notebook or a test before
    this one once silenced every later run of the process)."""
    from experiments import progress as progress_module

    def lines() -> str:
        out = io.StringIO()
        Progress("m", total=1, objective=Objective(), plain=True, clock=Clock(), out=out).render(final=True)
        return out.getvalue()

    with progress_module.muted(True):
        assert lines() == ""
    assert lines().startswith("m: 0/1 trials done")
