"""What a user sees while a method runs: trials finished / running / total, epochs trained,
errors, the best value of the task's metric so far and its trial, elapsed time and time left.

A Ray Tune callback. On a terminal it is one tqdm line per method, redrawn at most once a
second (tqdm's own rate gives the time left, from this method's finished trials); where
stdout is not a terminal (CI, nohup, a pipe) it prints a plain line at most every
``PLAIN_INTERVAL_S`` seconds, and one when the method ends. ``--quiet`` turns it off.
"""

from __future__ import annotations

import contextlib

import shutil
import sys
import time

from ray import tune

from core.rules import Objective, selection_key

PLAIN_INTERVAL_S = 10.0  # seconds between plain progress lines of one method
# --quiet while a run runs: Tuner.restore brings back the Progress callback of the run it resumes
# (Tune pickles its callbacks), so a quiet --resume of a run started without --quiet mutes it here.
_muted = False


@contextlib.contextmanager
def muted(quiet: bool):
    """Progress lines off (``quiet``) for the run inside, and as they were after it: a quiet run
    in a notebook or a test does not silence the next one."""
    global _muted
    before, _muted = _muted, bool(quiet)
    try:
        yield
    finally:
        _muted = before


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell), where stdout is no terminal but
    a progress bar still redraws in place."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Progress(tune.Callback):
    def __init__(self, name: str, total: int, objective: Objective, plain: bool | None = None,
                 clock=time.monotonic, out=None):
        """``total``: the trials the method will run; ``objective``: the task's metric and direction;
        ``plain``: force plain lines (None: plain unless stdout is a terminal); ``clock`` and ``out``
        stand in for the time and stdout (tests)."""
        self.name, self.total, self.objective, self.metric = name, total, objective, objective.metric
        self.plain, self._clock, self._out = plain, clock, out
        self.finished = self.running = self.errors = self.epochs = 0
        self.best: tuple[float, str] | None = None
        self._trials: dict[str, tuple[float, int]] = {}  # trial id -> (best value so far, epochs)
        self._order: dict[str, int] = {}  # trial id -> start order
        self._started: float | None = None
        self._last_line: float | None = None
        self._bar = None

    # Tune pickles its callbacks with the experiment (tuner.pkl): the stream and the bar stay out.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_bar", "_out", "_clock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _bar=None, _out=None, _clock=time.monotonic)

    # --- Tune's events ------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        self._order.setdefault(trial.trial_id, len(self._order))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs += 1
        value = result.get(self.metric)
        if not (isinstance(value, (int, float)) and value == value):
            return
        best, _ = self._trials.get(trial.trial_id, (None, 0))
        value = float(value) if self.objective.is_better(float(value), best) else best
        self._trials[trial.trial_id] = (value, int(result.get("epoch") or 0))
        # the method's pick by the rule the summary and the kept checkpoint use (core.rules): on ties
        # the trial trained longest, then the one started first
        leader = max(self._trials, key=lambda t: selection_key(*self._trials[t], self._order.get(t, len(self._order)),
                                                               self.objective))
        self.best = (self._trials[leader][0], leader)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished += 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished += 1
        self.errors += 1

    def on_trial_recover(self, iteration, trials, trial, **info):  # failed, to be retried: it starts again
        self.running = max(0, self.running - 1)

    def on_step_end(self, iteration, trials, **info):
        self.render()

    def on_experiment_end(self, trials, **info):
        self.render(final=True)

    # --- drawing ---------------------------------------------------------------------------------
    @property
    def stream(self):
        return self._out if self._out is not None else sys.stdout

    def _is_plain(self) -> bool:
        if self.plain is not None:
            return self.plain
        if self._out is None and in_notebook():
            return False  # tqdm.auto draws Jupyter's own bar there
        if not (hasattr(self.stream, "isatty") and self.stream.isatty()):
            return True
        # a terminal that reports no width (some CI consoles, a detached tmux pane): tqdm would
        # draw a bar of width 0, that is nothing at all
        return shutil.get_terminal_size(fallback=(80, 24)).columns <= 0

    def status(self, now: float) -> str:
        elapsed = now - (self._started if self._started is not None else now)
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else f"best {self.metric} -"
        left = "-"
        if not self.total:  # a --time-budget run: trials until the budget is spent, no count known
            left = "until the budget is spent"
        elif 0 < self.finished < self.total:
            left = "~" + _duration(elapsed / self.finished * (self.total - self.finished))
        elif self.finished >= self.total:
            left = "0m00s"
        done = f"{self.finished}/{self.total}" if self.total else f"{self.finished}"
        return (f"{self.name}: {done} trials done, {self.running} running, "
                f"{self.epochs} epochs, {self.errors} errors, {best}, elapsed {_duration(elapsed)}, left {left}")

    def render(self, final: bool = False) -> None:
        if _muted:
            return
        now = self._clock()
        if self._started is None:
            self._started = now
        if self._is_plain():
            if final or self._last_line is None or now - self._last_line >= PLAIN_INTERVAL_S:
                print(self.status(now), file=self.stream, flush=True)
                self._last_line = now
            return
        if self._bar is None:
            from tqdm.auto import tqdm  # the terminal's bar, or the notebook's widget in Jupyter

            self._bar = tqdm(total=self.total or None, desc=self.name, file=self.stream, mininterval=1.0, unit="trial",
                             dynamic_ncols=True, leave=True)
        self._bar.n = self.finished
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best else "-"
        self._bar.set_postfix_str(f"{self.running} running, {self.epochs} epochs, {self.errors} errors, "
                                  f"best {self.metric} {best}", refresh=False)
        if final:
            self._bar.refresh()
            self._bar.close()
            self._bar = None
        else:
            self._bar.update(0)  # tqdm redraws at most once per mininterval


class FailureLines(tune.Callback):
    """One terminal line per failed trial attempt, on stderr (also with --quiet: errors are not
    progress). The traceback stays in the trial's error.txt and its last line in trials.csv's
    error column; Ray's own screen-long tracebacks are filtered (experiments.console)."""

    def __init__(self, name: str, max_failures: int):
        self.name, self.max_failures = name, max_failures

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._line(trial, f"failed (attempt {trial.run_metadata.num_failures} of {self.max_failures + 1}); "
                          "Ray retries it")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed for good")

    def _line(self, trial, what: str) -> None:
        # the message from the file Ray has just written; the path where it lands in the run folder
        where = f" (traceback: {trial.path}/error.txt)" if trial.path and "://" not in trial.path else ""
        print(f"{self.name}: trial {trial.trial_id} {what}: {_last_line(trial.error_file)}{where}",
              file=sys.stderr, flush=True)


def _last_line(path: str | None) -> str:
    try:
        lines = [line.strip() for line in open(path).read().splitlines() if line.strip()]
    except (OSError, TypeError):
        return "error (no error file)"
    return lines[-1] if lines else "error"
