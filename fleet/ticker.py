"""The fleet's ticker: a pass every period, or sooner when a component says something is
due (an alert's group wait ending), so that a fault's page never waits for the period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

__all__ = ["Ticker"]


class Ticker:
    def __init__(self, period_s: float, clock: Callable[[], datetime]) -> None:
        self._period = period_s
        self._clock = clock  # the fleet's: the moments given to ``wake`` are on it
        self._due: datetime | None = None
        self._changed = threading.Condition()

    def wake(self, at: datetime | None = None) -> None:
        """Tick at ``at`` (now if None) if that is sooner than already planned."""
        when = at or self._clock()
        with self._changed:
            if self._due is None or when < self._due:
                self._due = when
                self._changed.notify()

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next tick; False once ``stop`` is set (set it, then ``wake``)."""
        deadline = time.monotonic() + self._period
        with self._changed:
            while not stop.is_set():
                left = deadline - time.monotonic()
                if self._due is not None:
                    until_due = (self._due - self._clock()).total_seconds()
                    if until_due <= 0:
                        self._due = None
                        return True
                    left = min(left, until_due)
                if left <= 0:
                    return True
                self._changed.wait(left)
            return False
