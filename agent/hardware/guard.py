"""Callbacks that run in a thread nobody watches must not let an exception end the thread.

pyudev's MonitorObserver runs its callback in its own thread and that thread ends at the
first exception the callback raises; hot-plug then stops without a word.  A guarded
callback counts and logs the failure instead (the first at once, then at most one line
per ``log_every_s`` saying how many were left out), and the thread keeps listening.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, ParamSpec

__all__ = ["Guarded"]

P = ParamSpec("P")
log = logging.getLogger(__name__)


class Guarded(Generic[P]):
    def __init__(self, fn: Callable[P, object], name: str, *, log_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fn = fn
        self.name = name
        self._log_every_s = log_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_log: float | None = None
        self._unlogged = 0
        self.failures = 0

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            self._fn(*args, **kwargs)
        except Exception:  # the thread must outlive any bug in the callback
            self._failed()

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            now = self._clock()
            if self._last_log is not None and now - self._last_log < self._log_every_s:
                self._unlogged += 1
                return
            left_out, self._unlogged, self._last_log = self._unlogged, 0, now
            total = self.failures
        log.exception("%s failed (%d failures so far, %d not logged since the last line); "
                      "still listening", self.name, total, left_out)
