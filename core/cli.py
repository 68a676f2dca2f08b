"""What the command lines (``run_all.py``, ``python -m experiments.replay``) share."""

from __future__ import annotations

import argparse
import os
import re
import sys

# The names the main command runs under: the installed console script and the clone's script.
PROGRAMS = ("lowres-tune", "run_all.py")


def program() -> str:
    """The main command as the user invoked it (for its errors and the commands it suggests):
    ``lowres-tune``, or ``run_all.py`` in a clone; ``lowres-tune`` from Python (a notebook, -c)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in PROGRAMS else PROGRAMS[0]


def command() -> str:
    """What to type to run the main command again: ``lowres-tune`` or ``python run_all.py``."""
    return "python run_all.py" if program() == "run_all.py" else "lowres-tune"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# --- durations (--time-budget) ---------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90m"``, ``"4h"``, ``"1h30m"``, ``"45s"`` or plain seconds (``"600"``) -> seconds; ValueError
    with one line for anything else."""
    cleaned = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    elif cleaned and re.fullmatch(r"(\d+(\.\d+)?[smhd])+", cleaned):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", cleaned))
    else:
        raise ValueError(f"{text!r} is not a duration; expected e.g. 90m, 4h, 1h30m or 600 (seconds)")
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all; expected e.g. 90m, 4h, 1h30m or 600 (seconds)")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as the budget's own words: 5400 -> 1h30m, 90 -> 1m30s, 12.5 -> 12.5s."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"
