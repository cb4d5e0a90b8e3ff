"""How far behind the broker this fleet process is: "caught up to" a moment.

Every acknowledgement round the process publishes a numbered probe to a topic only it
subscribes to (plainly, QoS 1).  The broker queues the probe for this client behind
whatever it already holds for it, and the dispatcher meets it behind every message
received before it; once the round that handled it is durable, everything the broker had
for this process when the probe was sent is in the database.  That send time is
``caught_up_to``: a device whose last message is older than it by more than its silence
limit was really silent, however long the backlog (a cold start, a slow database, a
broker that held the session's queue while the fleet was down).  No fixed grace after a
connect is needed, and none is enough.

While disconnected, or before the first probe came back, nothing is known and
``caught_up_to`` stays where it was (``None`` at start): silence is not judged on it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime

from agent.contract import utcnow

__all__ = ["Lag", "probe_topic"]

# Probes sent and not yet back, remembered; older ones are forgotten (a probe lost on a
# dead connection never comes back, and the next ones carry the measure on).
_MAX_OUT = 10_000


def probe_topic(prefix: str, client_id: str) -> str:
    return f"{prefix}/fleet/{client_id}/lag"


class Lag:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._number = 0
        self._out: deque[tuple[int, datetime]] = deque(maxlen=_MAX_OUT)
        self._caught_up: datetime | None = None

    def probe(self) -> bytes:
        """The payload of the next probe; its send time is remembered."""
        with self._lock:
            self._number += 1
            self._out.append((self._number, self._clock()))
            return str(self._number).encode()

    def handled(self, payload: bytes) -> None:
        """A probe came through and everything before it is durable."""
        try:
            number = int(payload)
        except ValueError:
            return
        with self._lock:
            while self._out and self._out[0][0] < number:
                self._out.popleft()
            if self._out and self._out[0][0] == number:
                sent = self._out.popleft()[1]
                if self._caught_up is None or sent > self._caught_up:
                    self._caught_up = sent

    def caught_up_to(self) -> datetime | None:
        """Everything the broker held for this process before this moment is handled."""
        with self._lock:
            return self._caught_up

    def behind_s(self) -> float | None:
        """Seconds between now and ``caught_up_to`` (None until the first probe)."""
        caught_up = self.caught_up_to()
        return None if caught_up is None else (self._clock() - caught_up).total_seconds()
