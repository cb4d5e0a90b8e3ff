"""Counting messages by reason, with a log line per reason at most every so often.

The ingest counts two families this way: refusals (a message that breaks the contract) and
suspicions (a valid message whose ``seq`` or ``ts`` the fleet does not take at its word).
A flood of either must cost a counter increment, not a log line per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from fleet.metrics import Sample

__all__ = ["ReasonLog"]


class ReasonLog:
    def __init__(
        self,
        what: str,
        metric: str,
        help_text: str,
        logger: logging.Logger,
        log_every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._metric = metric
        self._help = help_text
        self._log = logger
        self._log_every = log_every_s
        self._monotonic = monotonic
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def record(self, reason: str, topic: str, detail: str) -> None:
        with self._lock:
            self.counts[reason] += 1
            now = self._monotonic()
            last = self._last_log.get(reason)
            if last is not None and now - last < self._log_every:
                return
            self._last_log[reason] = now
            total = self.counts[reason]
        self._log.warning("%s message on %r: %s: %s (%d so far with this reason)",
                    self._what, topic, reason, detail, total)

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            counts = sorted(self.counts.items())
        for reason, count in counts:
            yield Sample(self._metric, self._help, count, labels={"reason": reason})
