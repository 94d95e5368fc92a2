"""Notices a strategy handler that runs longer than `core.handler_timeout_seconds`.

No per-call timing (that would cost the hot loop): a tick every fraction of the limit compares
the engine's progress marker — the simulated time plus a count of non-bar handler calls — with
the previous tick's. When it has not moved for the whole limit while the strategy is running,
the handler (or the handlers of one simulated instant) is stuck. In the main thread the tick is
SIGALRM and raises HandlerTimeout inside the running code; elsewhere a daemon thread records it
and the run goes on (Python can only interrupt the main thread).
"""

from __future__ import annotations

import signal
import threading
import time


class HandlerTimeout(BaseException):
    """Raised in the strategy's code. A BaseException, so `except Exception` in a strategy does
    not swallow it."""


class HandlerWatchdog:
    def __init__(self, *, timeout_seconds: float, progress):
        self.timeout = float(timeout_seconds)
        self.progress = progress  # () -> a value that changes whenever the engine moves on
        self.armed = False  # True only while strategy code may be running
        self.fired = False
        self.fired_at_progress = None
        self._last = None
        self._since = time.monotonic()
        self._tick = min(max(self.timeout / 5, 0.01), 1.0)
        self._uses_signal = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        self._previous_handler = None
        self._previous_timer = None
        self._thread = None
        self._stop = threading.Event()

    @property
    def interrupts(self) -> bool:
        return self._uses_signal

    def arm(self) -> None:
        self._last = None
        self._since = time.monotonic()
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def start(self) -> None:
        if self._uses_signal:
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_signal)
            self._previous_timer = signal.setitimer(signal.ITIMER_REAL, self._tick, self._tick)
        else:
            self._thread = threading.Thread(target=self._watch, name="handler-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.armed = False
        if self._uses_signal:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, self._previous_handler or signal.SIG_DFL)
            if self._previous_timer and self._previous_timer[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, *self._previous_timer)
        else:
            self._stop.set()
            self._thread.join(timeout=1)

    def _stuck(self) -> bool:
        now = time.monotonic()
        if not self.armed:
            self._last, self._since = None, now
            return False
        marker = self.progress()
        if marker != self._last:
            self._last, self._since = marker, now
            return False
        return now - self._since >= self.timeout and marker != self.fired_at_progress

    def _on_signal(self, signum, frame) -> None:
        if self._stuck():
            self.fired = True
            self.fired_at_progress = self._last
            raise HandlerTimeout(f"the handler ran longer than {self.timeout:g} s")

    def _watch(self) -> None:
        while not self._stop.wait(self._tick):
            if self._stuck():
                self.fired = True
                self.fired_at_progress = self._last
