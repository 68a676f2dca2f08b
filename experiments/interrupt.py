"""Ctrl-C during a run: the first stops the whole run, resumable; a second stops at once.

Ray Tune's own SIGINT handler only ends the ``Tuner.fit`` in progress (after a last snapshot of
its state) and returns as if the method had finished: a loop over methods would go on with the
next one and call the run finished. So the run installs this handler instead
(``TUNE_DISABLE_SIGINT_HANDLER=1``) and, on the first Ctrl-C, asks Tune to end the fit through
the same graceful path Ray's handler takes (Tune's SIGUSR1 handler, which every ``tune.run``
registers and which sets the loop's "interrupted" event). The runner then raises ``Interrupted``
instead of recording the method: its trials stay unfinished in Tune's snapshot, and
``--resume`` continues them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

# Ray reads it when each tune.run starts: ours is the SIGINT handler for the whole run.
DISABLE_RAY_HANDLER = "TUNE_DISABLE_SIGINT_HANDLER"


class Interrupted(Exception):
    """The user pressed Ctrl-C once: the run stopped between or inside a method, resumable."""


class InterruptGuard:
    """Context manager around a run's methods (main thread only; elsewhere it does nothing, as
    Python delivers signals to the main thread)."""

    def __init__(self, notice=None):
        self.interrupted = False
        self._notice = notice or (lambda line: print(line, file=sys.stderr, flush=True))
        self._previous = None
        self._env_before = None
        self._active = False

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._env_before = os.environ.get(DISABLE_RAY_HANDLER)
            os.environ[DISABLE_RAY_HANDLER] = "1"
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._active = True
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            if self._env_before is None:
                os.environ.pop(DISABLE_RAY_HANDLER, None)
            else:
                os.environ[DISABLE_RAY_HANDLER] = self._env_before
            self._active = False

    def check(self) -> None:
        """Raise Interrupted once Ctrl-C was pressed (called between a method's steps)."""
        if self.interrupted:
            raise Interrupted("interrupted")

    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted:  # the second Ctrl-C: stop now, wherever the run is
            raise KeyboardInterrupt
        self.interrupted = True
        self._notice("Ctrl-C: stopping after Tune saves the current method's state (Ctrl-C again to stop at once)")
        ray_handler = signal.getsignal(getattr(signal, "SIGUSR1", signal.SIGINT))
        # Tune's graceful stop, if a fit is running (its handler is a closure over the fit's event;
        # a stale one from a finished fit sets an event nobody waits on).
        if callable(ray_handler) and getattr(ray_handler, "__name__", "") == "signal_interrupt_tune_run":
            ray_handler(signum, frame)
            signal.signal(signal.SIGINT, self._on_sigint)  # it restores the handler it found: ours, but be sure
