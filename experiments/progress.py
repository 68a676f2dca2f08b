"""What a user sees while a method runs: trials finished / running / total, epochs trained,
errors, the best validation accuracy so far and its trial, elapsed time and time left.

A Ray Tune callback. On a terminal it is one tqdm line per method, redrawn at most once a
second (tqdm's own rate gives the time left, from this method's finished trials); where
stdout is not a terminal (CI, nohup, a pipe) it prints a plain line at most every
``PLAIN_INTERVAL_S`` seconds, and one when the method ends. ``--quiet`` turns it off.
"""

from __future__ import annotations

import sys
import time

from ray import tune

PLAIN_INTERVAL_S = 10.0  # seconds between plain progress lines of one method


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress(tune.Callback):
    def __init__(self, name: str, total: int, metric: str = "val_accuracy", plain: bool | None = None,
                 clock=time.monotonic, out=None):
        """``total``: the trials the method will run; ``plain``: force plain lines (None: plain
        unless stdout is a terminal); ``clock`` and ``out`` stand in for the time and stdout (tests)."""
        self.name, self.total, self.metric = name, total, metric
        self.plain, self._clock, self._out = plain, clock, out
        self.finished = self.running = self.errors = self.epochs = 0
        self.best: tuple[float, str] | None = None
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

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs += 1
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and value == value and (self.best is None or value > self.best[0]):
            self.best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished += 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running = max(0, self.running - 1)
        self.finished += 1
        self.errors += 1

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
        return not (hasattr(self.stream, "isatty") and self.stream.isatty())

    def status(self, now: float) -> str:
        elapsed = now - (self._started if self._started is not None else now)
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else f"best {self.metric} -"
        left = "-"
        if 0 < self.finished < self.total:
            left = "~" + _duration(elapsed / self.finished * (self.total - self.finished))
        elif self.finished >= self.total:
            left = "0m00s"
        return (f"{self.name}: {self.finished}/{self.total} trials done, {self.running} running, "
                f"{self.epochs} epochs, {self.errors} errors, {best}, elapsed {_duration(elapsed)}, left {left}")

    def render(self, final: bool = False) -> None:
        now = self._clock()
        if self._started is None:
            self._started = now
        if self._is_plain():
            if final or self._last_line is None or now - self._last_line >= PLAIN_INTERVAL_S:
                print(self.status(now), file=self.stream, flush=True)
                self._last_line = now
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.name, file=self.stream, mininterval=1.0, unit="trial",
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
