"""When the agent must not sample: lessons near, as the fleet's run-checks reveal them.

Sampling a camera or a microphone opens it exclusively (ffmpeg up to 15 s, arecord 1 s)
and the bandwidth test fills the uplink for about 6 s: none of it may happen while
teachers connect or teach.  The agent has no timetable; it learns the lessons from the
checks the fleet sends for them:

- a run-check with ``lesson_starts_at``/``lesson_ends_at`` (sent only to agents whose
  birth advertises ``CAPABILITIES``) names the lesson exactly;
- a run-check with only a ``lesson_id`` (an older fleet) says a lesson starts within the
  fleet's lead time: the agent then stays quiet for ``hold_s`` from that moment;
- ``passive: true`` asks for passive evidence only, whatever the agent knows.

Quiet means: from ``lead_s`` before a lesson's start to its end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from agent.contract import CAP_LESSON_WINDOW, CAP_PASSIVE, utcnow

__all__ = ["CAPABILITIES", "QuietWindows"]

#: What this agent's run-check understands beyond the v1 args, for its birth.
CAPABILITIES: Final = (CAP_PASSIVE, CAP_LESSON_WINDOW)


class QuietWindows:
    def __init__(self, lead_s: float = 15 * 60.0, hold_s: float = 90 * 60.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.lead = timedelta(seconds=lead_s)
        self.hold = timedelta(seconds=hold_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: list[tuple[datetime, datetime]] = []

    def lesson(self, starts_at: datetime | None = None, ends_at: datetime | None = None) -> None:
        """Note a lesson a run-check named; without its times, hold quiet from now."""
        now = self.clock()
        if starts_at is None or ends_at is None:
            window = (now, now + self.hold)
        else:
            window = (starts_at - self.lead, ends_at)
        with self._lock:
            self._windows = [w for w in self._windows if w[1] > now] + [window]

    def quiet_until(self) -> datetime | None:
        """The end of the quiet window now in force, or None when sampling is allowed."""
        now = self.clock()
        with self._lock:
            ends = [end for start, end in self._windows if start <= now < end]
        return max(ends) if ends else None
