"""Each device's latest state: online/offline, sequence tracking, latest telemetry.

Online/offline comes from the retained ``status`` topic: the agent's birth ("online") and
its Last Will or clean shutdown ("offline"), both carrying the connection's ``session``.
A status of an older session than the one we know is ignored, so a late Last Will of a
previous connection never marks a device offline that is online again; a status of the
current session is applied; a newer session starts the new connection.  ``stale(now)``
adds a second offline signal: an online device silent for three intervals.

Sequence numbers (agent payloads other than status): ``admit`` (the dispatcher's gate)
sees each message before any sink.  A seq above the highest seen advances it and counts
the skipped seqs as gaps; a skipped seq arriving later (spool replay) fills its gap and is
admitted; any other seq at or below the highest is a duplicate, counted and not
dispatched.  After a restart the fleet knows the highest flushed seq but not which seqs
below it were missing, so late arrivals below it count as duplicates.  A new session's
birth whose seq is below the highest seen means the agent's counter restarted (a
reinstalled device): tracking starts again from the next message.  Status messages are
never dropped: retained ones are redelivered on every reconnect.

The state lives in memory; ``flush()`` writes changed devices to ``DeviceState`` in one
transaction and a new instance loads the table, so a restarted fleet knows the last state.
With several fleet processes each flushes what it saw; the newer session and the newer
telemetry win per device.  Sequence tracking assumes one process sees all of a device's
messages: Mosquitto hands shared-subscription messages out round-robin, so with several
processes on Mosquitto the per-process gap counts are not meaningful (EMQX's
``hash_clientid`` / ``hash_topic`` shared-subscription strategy keeps a device on one
process and makes them meaningful again).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent.contract import Kind, parse_ts
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Device, DeviceState
from fleet.metrics import Sample
from fleet.sinks import NullSink

__all__ = ["DeviceStates", "DeviceStatus", "SeqTracker"]

# How many skipped seqs per device are remembered for late filling; beyond it the oldest
# are forgotten (and a late arrival of those counts as a duplicate).
_MAX_MISSING = 10_000


@dataclass
class SeqTracker:
    high: int = -1  # -1: no baseline yet, the next seq starts tracking
    missing: set[int] = field(default_factory=set)
    gaps: int = 0  # seqs skipped and not (yet) received late
    duplicates: int = 0

    def observe(self, seq: int) -> bool:
        """True if ``seq`` is new (admit it), False for a duplicate."""
        if self.high < 0 or seq > self.high:
            if self.high >= 0 and seq > self.high + 1:
                self.gaps += seq - self.high - 1
                self.missing.update(range(max(self.high + 1, seq - _MAX_MISSING), seq))
                while len(self.missing) > _MAX_MISSING:
                    self.missing.remove(min(self.missing))
            self.high = seq
            return True
        if seq in self.missing:
            self.missing.remove(seq)
            self.gaps -= 1
            return True
        self.duplicates += 1
        return False

    def restart(self) -> None:
        self.high = -1
        self.missing.clear()


@dataclass(frozen=True)
class DeviceStatus:
    """A snapshot of one device, safe to hand to other threads."""

    device_id: str
    online: bool
    session: int
    agent_version: str
    last_seen: datetime | None
    last_seq: int
    seq_gaps: int
    seq_duplicates: int
    interval: float
    inventory: dict[str, Any]
    telemetry: dict[str, Any]
    telemetry_at: datetime | None


@dataclass
class _Device:
    online: bool = False
    session: int = 0
    agent_version: str = ""
    last_seen: datetime | None = None
    interval: float = 0.0
    inventory: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    telemetry_at: datetime | None = None
    seq: SeqTracker = field(default_factory=SeqTracker)


class DeviceStates(NullSink):
    """The ``MessageSink`` and dispatcher gate that keeps every device's state."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Callable[[], datetime] = utcnow,
        default_interval: float = 15.0,
        stale_intervals: float = 3.0,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._default_interval = default_interval
        self._stale_intervals = stale_intervals
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._dirty: set[str] = set()
        self.stale_status_ignored = 0
        self.seq_restarts = 0
        self.load()

    # ------------------------------------------------------------ persistence

    def load(self) -> None:
        with session_scope(self._sessions) as session:
            rows = session.scalars(select(DeviceState)).all()
            loaded = {
                row.device_id: _Device(
                    online=row.online,
                    session=row.session,
                    agent_version=row.agent_version,
                    last_seen=row.last_seen,
                    interval=float((row.telemetry or {}).get("interval") or 0.0),
                    inventory=dict(row.inventory or {}),
                    telemetry=dict(row.telemetry or {}),
                    telemetry_at=row.telemetry_at,
                    seq=SeqTracker(
                        high=row.last_seq, gaps=row.seq_gaps, duplicates=row.seq_duplicates
                    ),
                )
                for row in rows
            }
        with self._lock:
            self._devices = loaded
            self._dirty.clear()

    def flush(self) -> int:
        """Write every device changed since the last flush; returns how many."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            snapshot = {d: self._snapshot(d, self._devices[d]) for d in dirty}
        if not snapshot:
            return 0
        try:
            with session_scope(self._sessions) as session:
                known = set(session.scalars(select(Device.id).where(Device.id.in_(snapshot))))
                rows = {
                    row.device_id: row
                    for row in session.scalars(
                        select(DeviceState).where(DeviceState.device_id.in_(known))
                    )
                }
                for device_id in known:
                    row = rows.get(device_id)
                    if row is None:
                        row = DeviceState(
                            device_id=device_id, session=0, last_seq=-1, inventory={}, telemetry={}
                        )
                        session.add(row)
                    _merge(row, snapshot[device_id])
        except Exception:
            with self._lock:  # try again on the next flush
                self._dirty |= dirty
            raise
        return len(known)

    # ------------------------------------------------------------ gate and sink

    def admit(self, device_id: str, kind: Kind, payload: dict[str, Any]) -> bool:
        with self._lock:
            dev = self._devices.setdefault(device_id, _Device())
            dev.last_seen = self._clock()
            self._dirty.add(device_id)
            if kind is Kind.STATUS:
                return True
            return dev.seq.observe(int(payload["seq"]))

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        session, online = int(payload["session"]), payload["state"] == "online"
        with self._lock:
            dev = self._devices.setdefault(device_id, _Device())
            self._dirty.add(device_id)
            if session < dev.session:
                self.stale_status_ignored += 1
                return
            if online and session > dev.session and 0 <= int(payload["seq"]) < dev.seq.high:
                dev.seq.restart()
                self.seq_restarts += 1
            dev.session = session
            dev.online = online
            dev.agent_version = str(payload.get("agent_version", dev.agent_version))
            if online and isinstance(payload.get("inventory"), dict):
                dev.inventory = payload["inventory"]
            if online and isinstance(payload.get("interval"), int | float):
                dev.interval = float(payload["interval"])

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        at = parse_ts(payload["ts"])
        with self._lock:
            dev = self._devices.setdefault(device_id, _Device())
            self._dirty.add(device_id)
            dev.interval = float(payload["interval"])
            # A replayed (spooled) message must not replace newer telemetry.
            if dev.telemetry_at is None or at >= dev.telemetry_at:
                dev.telemetry = {"interval": dev.interval, "sections": payload["sections"]}
                dev.telemetry_at = at

    # ------------------------------------------------------------ queries

    def get(self, device_id: str) -> DeviceStatus | None:
        with self._lock:
            dev = self._devices.get(device_id)
            return None if dev is None else self._snapshot(device_id, dev)

    def all(self) -> list[DeviceStatus]:
        with self._lock:
            return [self._snapshot(d, dev) for d, dev in sorted(self._devices.items())]

    def stale(self, now: datetime | None = None) -> list[str]:
        """Online devices silent for ``stale_intervals`` of their reporting interval."""
        now = now or self._clock()
        with self._lock:
            return sorted(
                device_id
                for device_id, dev in self._devices.items()
                if dev.online
                and dev.last_seen is not None
                and now - dev.last_seen
                > timedelta(seconds=self._stale_intervals * self._interval(dev))
            )

    def samples(self) -> Iterable[Sample]:
        now = self._clock()
        stale = len(self.stale(now))
        with self._lock:
            devices = list(self._devices.values())
        online = sum(1 for d in devices if d.online)
        yield Sample("syncclass_devices_online", "Devices whose agent is connected",
                     online, "gauge")
        yield Sample("syncclass_devices_offline", "Known devices not connected",
                     len(devices) - online, "gauge")
        yield Sample("syncclass_devices_stale", "Online devices silent for 3 intervals",
                     stale, "gauge")
        yield Sample("syncclass_seq_missing", "Sequence numbers skipped and not received",
                     sum(d.seq.gaps for d in devices), "gauge")
        yield Sample("syncclass_seq_duplicates_total", "Duplicate (device, seq) messages",
                     sum(d.seq.duplicates for d in devices))
        yield Sample("syncclass_status_stale_ignored_total",
                     "Status messages of an older session, ignored", self.stale_status_ignored)

    # ------------------------------------------------------------ helpers

    def _interval(self, dev: _Device) -> float:
        return dev.interval or self._default_interval

    def _snapshot(self, device_id: str, dev: _Device) -> DeviceStatus:
        return DeviceStatus(
            device_id=device_id,
            online=dev.online,
            session=dev.session,
            agent_version=dev.agent_version,
            last_seen=dev.last_seen,
            last_seq=dev.seq.high,
            seq_gaps=dev.seq.gaps,
            seq_duplicates=dev.seq.duplicates,
            interval=self._interval(dev),
            inventory=copy.deepcopy(dev.inventory),
            telemetry=copy.deepcopy(dev.telemetry),
            telemetry_at=dev.telemetry_at,
        )


def _merge(row: DeviceState, snap: DeviceStatus) -> None:
    if snap.session > row.session:
        row.last_seq = snap.last_seq  # the agent's counter may have restarted
    elif snap.session == row.session:
        row.last_seq = max(row.last_seq, snap.last_seq)
    if snap.session >= row.session:
        row.session = snap.session
        row.online = snap.online
        row.agent_version = snap.agent_version
        row.inventory = snap.inventory
    if snap.last_seen is not None and (row.last_seen is None or snap.last_seen > row.last_seen):
        row.last_seen = snap.last_seen
    row.seq_gaps = snap.seq_gaps
    row.seq_duplicates = snap.seq_duplicates
    if snap.telemetry_at is not None and (
        row.telemetry_at is None or snap.telemetry_at >= row.telemetry_at
    ):
        row.telemetry = snap.telemetry
        row.telemetry_at = snap.telemetry_at
