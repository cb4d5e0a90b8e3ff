"""Agents the broker lets in but the inventory refuses: seen, listed, told, never a storm.

A device whose broker password works but which the inventory lacks (or has disabled)
gets every message refused by validation.  That must not be visible only in a log: each
such device is one entry here (first and last seen, messages, the latest topic), listed
by the API and the page, and reported to the alert engine once when first seen, again at
most every ``report_every_s`` while it keeps talking (which keeps its one ticket's "last
seen" fresh), and as gone once quiet for ``quiet_s``.  A chatty agent is one entry and
one ticket; the number of entries is bounded, since each costs one inventory lookup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Device
from fleet.metrics import Sample

__all__ = ["Report", "Stranger", "Strangers"]

log = logging.getLogger(__name__)

#: ``AlertEngine.stranger``: (device id, still talking?, disabled rather than unknown?, details)
Report = Callable[[str, bool, bool, dict[str, Any]], None]


@dataclass(frozen=True)
class Stranger:
    device_id: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    topic: str  # the latest one it published on
    disabled: bool  # in the inventory but disabled (else: unknown to it)
    classroom_id: int | None  # where a disabled device stands
    reported_at: datetime | None = None  # last told to the alert engine as active

    def details(self) -> dict[str, Any]:
        return {"topic": self.topic, "messages": self.messages,
                "first_seen": self.first_seen.isoformat(), "disabled": self.disabled}


class Strangers:
    def __init__(
        self,
        sessions: SessionFactory,
        clock: Callable[[], datetime] = utcnow,
        report: Report | None = None,
        report_every_s: float = 300.0,
        quiet_s: float = 900.0,
        max_entries: int = 1000,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._report = report
        self._every = timedelta(seconds=report_every_s)
        self._quiet = timedelta(seconds=quiet_s)
        self._max = max_entries
        self._lock = threading.Lock()
        self._seen: dict[str, Stranger] = {}
        self.overflow = 0  # strangers not listed because the list was full

    def seen(self, device_id: str, topic: str) -> None:
        """One refused message of an unknown or disabled device (ingest worker thread)."""
        now = self._clock()
        with self._lock:
            entry = self._seen.get(device_id)
            if entry is None and len(self._seen) >= self._max:
                self.overflow += 1
                return
        if entry is None:
            try:
                disabled, classroom_id = self._place(device_id)
            except SQLAlchemyError:  # never stop the ingest: the next message tries again
                log.warning("inventory lookup of refused device %s failed", device_id)
                return
            entry = Stranger(device_id, now, now, 0, topic, disabled, classroom_id)
        entry = replace(entry, last_seen=now, messages=entry.messages + 1, topic=topic)
        due = entry.reported_at is None or now - entry.reported_at >= self._every
        if due:
            entry = replace(entry, reported_at=now)
        with self._lock:
            self._seen[device_id] = entry
        if due:
            log.warning("device %s is %s but talks on %s: listed and alerted", device_id,
                        "disabled" if entry.disabled else "not in the inventory", topic)
            self._tell(entry, True)

    def _place(self, device_id: str) -> tuple[bool, int | None]:
        with session_scope(self._sessions) as session:
            device = session.get(Device, device_id)
            return (True, device.classroom_id) if device is not None else (False, None)

    def _tell(self, entry: Stranger, active: bool) -> None:
        if self._report is None:
            return
        try:
            self._report(entry.device_id, active, entry.disabled, entry.details())
        except Exception:  # the listing stands even when the alert engine is away
            log.exception("reporting stranger %s failed", entry.device_id)
            with self._lock:
                current = self._seen.get(entry.device_id)
                if current is not None:  # told again with its next message
                    self._seen[entry.device_id] = replace(current, reported_at=None)

    def tick(self) -> None:
        """Forget strangers quiet for ``quiet_s``, telling the alert engine they are gone."""
        now = self._clock()
        with self._lock:
            gone = [e for e in self._seen.values() if now - e.last_seen >= self._quiet]
            for entry in gone:
                del self._seen[entry.device_id]
        for entry in gone:
            self._tell(entry, False)

    def list(self) -> list[Stranger]:
        with self._lock:
            return sorted(self._seen.values(), key=lambda e: e.device_id)

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            listed = len(self._seen)
        yield Sample("syncclass_ingest_strangers", "Devices the broker let in but the "
                     "inventory refuses (unknown or disabled), heard recently", listed, "gauge")
        yield Sample("syncclass_ingest_strangers_overflow_total",
                     "Refused devices not listed because the list was full", self.overflow)
