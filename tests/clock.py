"""The injected clock of the tests: time moves only when the test says so."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from agent.compat import UTC

__all__ = ["ManualClock"]


class ManualClock:
    """A stopped clock in UTC, moved by hand.

    Thread-safe: the components under test read it from their own threads (the
    ingest's dispatcher, paho's network loop, the fleet's tick thread)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the clock needs a timezone-aware start, got {start!r}")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move forward by ``seconds`` plus any ``timedelta`` keywords; the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (backwards too, as a corrected system clock would)."""
        if when.tzinfo is None:
            raise ValueError(f"the clock needs a timezone-aware time, got {when!r}")
        with self._lock:
            self._now = when.astimezone(UTC)
            return self._now
