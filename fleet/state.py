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
dispatched.  After a restart a process knows the highest seq it flushed itself (its mark in
``device_seq_mark``, under its MQTT client id) but not which seqs below it were missing,
so late arrivals below it count as duplicates.  The shared ``device_state.last_seq`` is
not its baseline: with several processes on a ``$share`` group another process moves it
on, and the messages this process's persistent session delivers again after a crash (never
made durable, so never acknowledged) lie below it; they are new to this process.  The
shared value only bounds what is believable (the ceiling below) and is shown as last_seq.

A seq is not believed blindly (``SeqTracker.judge``): one far beyond the expected next
value is held aside, so a single forged or corrupt message cannot move the cursor past the
real agent and make every later message of it a "duplicate".  What a real agent does
decides the rule.  Its seq comes from the spool and survives restarts; while connected it
counts up one by one, and after hours offline it replays its spool oldest first (old
``ts``, consecutive seqs), after a birth whose ``seq`` is the last one it handed out.  So
the ceiling of what is believable is the higher of the highest seq seen and the birth's
seq, plus ``jump``: a spool replay after any outage is in order below it and passes.  A
real jump beyond it happens when the fleet itself missed a stretch (it was down for days)
or the agent's spool was rebuilt (its seq then leaps to the epoch in milliseconds, always
announced by a new session's birth): the held jump is adopted, held messages released
in order, once ``confirm`` consecutive seqs follow it with nothing from the current line
in between, and a new session's birth re-bases the cursor at once.  A forgery does not
survive the real agent's next message on the current line, and a burst of forged
consecutive seqs that was believed is undone by the agent's own next ``confirm`` + 1.

Sessions: duplicates are judged per device, session and seq, where the session is the
connection of the latest birth: the agent's envelope carries ``session`` on status only,
and its spool sends each record verbatim, possibly over a later connection than the one
it was written under.  So a new session whose birth seq continues the seen line, however
far above it, keeps the seen seqs (a record resent after a lost PUBACK stays a duplicate;
a rebuilt spool's leap is counted as a gap), while one whose birth seq is below the
highest seen (a reinstalled agent, or a cursor a forgery had moved) starts tracking again
from the agent's own word.  A reinstalled agent counts its sessions from 1 again, so a
birth is placed by its stamp as well as its session (``_born``), and the stamp is stored
with the state.  Status messages are never dropped: retained ones are redelivered on
every reconnect.

Time: the fleet times everything by its own clock when the message reaches the state
(``telemetry_at``, ``status_at``, ``last_seen``) and orders it by session and seq; the
device's ``ts`` is kept for display (``telemetry["ts"]``) and to measure the device's
clock.  Stored telemetry follows the sequence: the message that advances the cursor
replaces it, a late fill does not, so a wrong clock can never freeze it.  A Last Will is
stamped when the fleet learns of it, not with the connect time it carries.

Clock offset (``clock_offset``): each live telemetry message (above the current birth's
seq, so not a spool replay, and at the head of the line) gives a sample ``ts - receive
time``.  Transport and queueing delay only ever make a sample smaller than the true
offset, so the estimate is the largest of the last ``_OFFSET_SAMPLES`` samples (NTP's
minimum-delay filter): a backlog cannot make a correct clock look slow for long.  When
the estimate's size crosses ``clock_skew_s`` either way, or while it stays beyond it,
``on_clock`` is told (device id, offset in seconds, skewed?), outside the lock.

The state lives in memory; ``flush()`` writes changed devices to ``DeviceState`` and a new
instance loads the table, so a restarted fleet knows the last state.  The ingest writes
it in its acknowledgement rounds (``cut()``, on the ingest's acknowledging thread, never
on the fleet's ticker, whose alert timers and checks must not wait for the database) and
``close()`` writes what is left.  A flush copies only the changed devices under the lock,
and upserts them in device-id order in transactions of ``_CHUNK`` devices, so SQLite's
write lock is never held for long and two PostgreSQL writers lock rows in the same order.
With several fleet processes each flushes what it saw; the merge is in the upsert's SET
clause, against the stored row under its lock, so the newer session and the newer
telemetry win per device whichever process writes last.  Sequence tracking assumes one
process sees all of a device's messages: Mosquitto hands shared-subscription
messages out round-robin, so with several processes on Mosquitto the per-process gap
counts are not meaningful (EMQX's ``hash_clientid`` / ``hash_topic`` shared-subscription
strategy keeps a device on one process and makes them meaningful again).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, not_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from agent.contract import Kind, parse_ts
from fleet.db.base import SessionFactory, insert_on_conflict, session_scope, utcnow
from fleet.db.models import Device, DeviceSeqMark, DeviceState
from fleet.metrics import Sample
from fleet.sinks import Admission, NullSink

__all__ = ["DeviceStates", "DeviceStatus", "Seen", "SeqTracker"]

log = logging.getLogger(__name__)

# How many skipped seqs per device are remembered for late filling; beyond it the oldest
# are forgotten (and a late arrival of those counts as a duplicate).
_MAX_MISSING = 10_000
# Live samples the clock offset estimate is the largest of (see the module docstring).
_OFFSET_SAMPLES = 5
# Devices per flush transaction: short SQLite write locks for the other writers (alert
# engine, checks) and IN lists far below any database's bound-parameter limit.
_CHUNK = 1_000
_TABLE: Table = DeviceState.__table__  # type: ignore[assignment]
_MARKS: Table = DeviceSeqMark.__table__  # type: ignore[assignment]


class Seen(Enum):
    """What ``SeqTracker.judge`` made of one seq."""

    NEW = "new"  # the next on the line, or a late fill of a gap: dispatch it
    DUPLICATE = "duplicate"
    HELD = "seq-jump"  # far beyond the line: held aside, not believed yet
    ADOPTED = "adopted"  # confirms a held jump: the held messages and this one go out


@dataclass
class _Jump:
    first: int
    last: int


@dataclass
class SeqTracker:
    high: int = -1  # -1: no baseline yet, the next seq starts tracking
    missing: set[int] = field(default_factory=set)
    gaps: int = 0  # seqs skipped and not (yet) received late
    duplicates: int = 0
    jump: int = 1_000  # how far past the ceiling a seq is still believed
    confirm: int = 3  # consecutive successors that make a held jump believed
    ceiling: int = -1  # the last seq the agent handed out, as its latest birth said
    pending: _Jump | None = None
    # Between the top of the line the last adopted jump replaced and the jump's first seq.
    abandoned: tuple[int, int] | None = None
    jumps_adopted: int = 0

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

    def judge(self, seq: int) -> Seen:
        """``observe`` with a bound on how far one message may move the cursor.

        A candidate line is held until ``confirm`` consecutive seqs follow its first with
        nothing on the current line in between; then it becomes the current line and the
        one it replaced is remembered as abandoned.  Seqs continuing the abandoned line
        (above its top, below the jump) are a candidate too: a jump that was
        believed wrongly (someone with the device's credentials sent a burst of forged
        consecutive seqs) is undone by the real agent's own next messages, which are
        released then, so nothing of the real agent is lost, only delayed."""
        pending = self.pending
        if pending is not None and seq == pending.last + 1:
            pending.last = seq
            if seq - pending.first < self.confirm:
                return Seen.HELD
            # The skipped stretch is not counted as gaps: it is what the fleet never saw
            # (it was down) or what the agent never sent (a rebuilt spool).
            self.abandoned = (self.high, pending.first)
            self.high, self.pending = seq, None
            self.missing.clear()
            self.jumps_adopted += 1
            return Seen.ADOPTED
        if pending is not None and pending.first <= seq <= pending.last:
            self.duplicates += 1
            return Seen.DUPLICATE
        if self.abandoned is not None and self.abandoned[0] < seq < self.abandoned[1]:
            self.pending = _Jump(seq, seq)
            return Seen.HELD
        if seq <= max(self.high, self.ceiling) + self.jump or (
            self.high < 0 and self.ceiling < 0  # nothing known yet: anything is a start
        ):
            new = self.observe(seq)
            if new:
                self.pending = None  # the current line goes on: a held jump was not its
            return Seen.NEW if new else Seen.DUPLICATE
        self.pending = _Jump(seq, seq)
        return Seen.HELD

    def new_session(self, birth_seq: int) -> bool:
        """Re-base on a new connection's birth; True if tracking started again.

        A birth seq at or above the highest seen continues the line, however far: the
        agent replays the stretch in between from its spool.  One below it means the seen
        line is not this agent's counter (reinstalled, or a forgery had moved it)."""
        self.pending = self.abandoned = None
        self.ceiling = birth_seq
        if birth_seq < self.high:
            self.restart()
            return True
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
    telemetry_at: datetime | None  # fleet time the stored telemetry arrived
    status_at: datetime | None = None  # fleet time the current online/offline was learnt
    clock_offset_s: float | None = None  # device clock minus fleet clock, once measured


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
    birth_at: datetime | None = None  # ts of the current session's birth, once seen
    status_at: datetime | None = None
    offsets: list[float] = field(default_factory=list)  # the latest live samples, seconds
    skewed: bool = False
    seq: SeqTracker = field(default_factory=SeqTracker)
    # Messages of a held seq jump, released in order if it is adopted.
    held: list[tuple[Kind, dict[str, Any]]] = field(default_factory=list)


class DeviceStates(NullSink):
    """The ``MessageSink`` and dispatcher gate that keeps every device's state."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Callable[[], datetime] = utcnow,
        default_interval: float = 15.0,
        stale_intervals: float = 3.0,
        seq_jump: int = 1_000,
        seq_confirm: int = 3,
        ts_ahead_s: float = 86_400.0,
        clock_skew_s: float = 120.0,
        on_clock: Callable[[str, float, bool], None] | None = None,
        prompt: Callable[[], bool] = lambda: True,
        holder: str = "",
    ) -> None:
        self._sessions = sessions
        # This process's identity for its own seq marks (its MQTT client id, whose
        # persistent session redelivers to it alone).
        self._holder = holder
        self._skew = clock_skew_s
        self._on_clock = on_clock
        # Whether messages reach us without a backlog now (the ingest's lag): one that
        # waited in a queue would read as a device clock running slow by the wait.
        self._prompt = prompt
        self._clock = clock
        self._seq_jump = seq_jump
        self._seq_confirm = seq_confirm
        self._ts_ahead = timedelta(seconds=ts_ahead_s)
        self._default_interval = default_interval
        self._stale_intervals = stale_intervals
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._dirty: set[str] = set()
        self._flush_lock = threading.Lock()  # one flush at a time: no older write wins
        self.stale_status_ignored = 0
        self.seq_restarts = 0
        self.load()

    # ------------------------------------------------------------ persistence

    def load(self) -> None:
        with session_scope(self._sessions) as session:
            rows = session.scalars(select(DeviceState)).all()
            marks: dict[str, int] = dict(session.execute(  # type: ignore[arg-type]
                select(DeviceSeqMark.device_id, DeviceSeqMark.last_seq)
                .where(DeviceSeqMark.holder == self._holder)
            ).all())
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
                    birth_at=row.birth_at,
                    status_at=row.status_at,
                    seq=self._tracker(
                        # A mark above the shared row is of a line a later birth
                        # replaced (a reinstall another process heard).
                        high=min(marks.get(row.device_id, -1), row.last_seq),
                        gaps=row.seq_gaps,
                        duplicates=row.seq_duplicates, ceiling=row.last_seq,
                    ),
                )
                for row in rows
            }
        with self._lock:
            self._devices = loaded
            self._dirty.clear()

    def flush(self) -> int:
        """Write every device changed since the last flush; returns how many."""
        with self._flush_lock:
            return self._write_rows(self._changed())

    def cut(self) -> Callable[[], None]:
        """``Durable``: the devices changed so far, as they are now, written later."""
        rows = self._changed()

        def persist() -> None:
            with self._flush_lock:
                self._write_rows(rows)

        return persist

    def _changed(self) -> list[dict[str, Any]]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            # Plain references, no deep copy: on_status and on_telemetry replace the
            # inventory and telemetry dicts whole and nothing mutates them in place
            # (the other sinks given the same payload only read it), so the dicts
            # stay unchanged while they are written outside the lock.
            return [_row(d, self._devices[d]) for d in dirty]

    def _write_rows(self, rows: list[dict[str, Any]]) -> int:
        # A stored stamp beyond this is a poisoned one (written before the ingest
        # judged ts), which must not outrank every real message after it.
        believable = self._clock() + self._ts_ahead
        written = 0
        for start in range(0, len(rows), _CHUNK):
            try:
                with session_scope(self._sessions) as session:
                    written += _write(session, rows[start:start + _CHUNK], believable,
                                      self._holder)
            except Exception:
                with self._lock:  # try again on the next flush
                    self._dirty.update(r["device_id"] for r in rows[start:])
                raise
        return written

    def close(self) -> None:
        """Write what changed since the last flush or cut."""
        self.flush()

    # ------------------------------------------------------------ gate and sink

    def admit(self, device_id: str, kind: Kind, payload: dict[str, Any]) -> Admission:
        mine = ((kind, payload),)
        with self._lock:
            dev = self._device(device_id)
            if kind is Kind.STATUS:
                self._heard(device_id, dev)
                return Admission(mine)
            seq = int(payload["seq"])
            expected = max(dev.seq.high, dev.seq.ceiling) + 1
            seen = dev.seq.judge(seq)
            if seen is Seen.HELD:
                # Not heard: a held message moves nothing, not even the liveness clock.
                if dev.seq.pending is not None and dev.seq.pending.first == seq:
                    dev.held.clear()  # an earlier held jump was never confirmed
                dev.held.append((kind, payload))
                return Admission((), seen.value, f"seq {seq}, expected about {expected}")
            self._heard(device_id, dev)
            if seen is Seen.DUPLICATE:
                return Admission((), seen.value)
            held, dev.held = dev.held, []
            if seen is Seen.ADOPTED:
                log.warning("%s: seq jump to %d believed after %d consecutive seqs", device_id,
                            held[0][1]["seq"], len(held))
                return Admission((*held, *mine))
            return Admission(mine)

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        session, online = int(payload["session"]), payload["state"] == "online"
        with self._lock:
            dev = self._device(device_id)
            self._dirty.add(device_id)
            born = online and self._born(dev, session, int(payload["seq"]), parse_ts(payload["ts"]))
            if session < dev.session and not born:
                self.stale_status_ignored += 1
                return
            if born:
                dev.held.clear()
                dev.birth_at = parse_ts(payload["ts"])
                dev.offsets = []  # a new connection: perhaps after the clock was set right
                if dev.seq.new_session(int(payload["seq"])):
                    self.seq_restarts += 1
            dev.session = session
            if online != dev.online or born or dev.status_at is None:
                dev.status_at = self._clock()
            dev.online = online
            dev.agent_version = str(payload.get("agent_version", dev.agent_version))
            if online and isinstance(payload.get("inventory"), dict):
                dev.inventory = payload["inventory"]
            if online and isinstance(payload.get("interval"), int | float):
                dev.interval = float(payload["interval"])

    @staticmethod
    def _born(dev: _Device, session: int, seq: int, at: datetime) -> bool:
        """Whether an "online" status starts a connection the state does not know yet.

        A higher session always does.  The current session's own birth (the retained one,
        redelivered on every fleet reconnect, the same stamp again) never does; after a
        fleet restart its stamp is not known and is learnt from it, unless it is later
        than the device's last telemetry, which no birth of the current connection can be.
        Any other birth at or below the current session is either an old connection's,
        delivered late, or a reinstalled agent's, whose spool (and with it seq and
        session) started again from nothing: the reinstalled one is stamped after what
        the device last said, the late one before.
        """
        last = dev.birth_at or dev.telemetry_at
        if session > dev.session:
            return True
        if session == dev.session and (
            at == dev.birth_at or (dev.birth_at is None and (last is None or at <= last))
        ):
            dev.seq.ceiling, dev.birth_at = seq, at
            return False
        return last is None or at > last

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        now = self._clock()
        told: tuple[float, bool] | None = None
        with self._lock:
            dev = self._device(device_id)
            self._dirty.add(device_id)
            dev.interval = float(payload["interval"])
            # The newest is the one at the head of the sequence, whatever its clock says:
            # a late fill from the spool never replaces it, and a wrong ts never freezes it.
            seq = int(payload["seq"])
            if seq >= dev.seq.high:
                dev.telemetry = {"interval": dev.interval, "sections": payload["sections"],
                                 "ts": payload["ts"]}
                dev.telemetry_at = now
                # Live (written after the current connection began) and not delayed.
                if seq > dev.seq.ceiling and self._prompt():
                    told = self._sample(dev, (parse_ts(payload["ts"]) - now).total_seconds())
        if told is not None and self._on_clock is not None:
            self._on_clock(device_id, *told)

    def _sample(self, dev: _Device, offset: float) -> tuple[float, bool] | None:
        """Add one live offset sample; what to tell ``on_clock``, if anything."""
        dev.offsets = [*dev.offsets[1 - _OFFSET_SAMPLES:], offset]
        estimate = max(dev.offsets)
        skewed = abs(estimate) > self._skew
        if skewed or dev.skewed:
            dev.skewed = skewed
            return estimate, skewed
        return None

    def clock_offset(self, device_id: str) -> float:
        """The device clock minus the fleet's, in seconds (0 until measured)."""
        with self._lock:
            dev = self._devices.get(device_id)
            return max(dev.offsets) if dev is not None and dev.offsets else 0.0

    # ------------------------------------------------------------ queries

    def get(self, device_id: str) -> DeviceStatus | None:
        with self._lock:
            dev = self._devices.get(device_id)
            shared = None if dev is None else self._status(device_id, dev)
        return None if shared is None else _private(shared)

    def all(self) -> list[DeviceStatus]:
        with self._lock:
            shared = [self._status(d, dev) for d, dev in self._devices.items()]
        return sorted((_private(s) for s in shared), key=lambda s: s.device_id)

    @property
    def stale_intervals(self) -> float:
        """How many of its reporting intervals a silent device is stale after."""
        return self._stale_intervals

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
        yield Sample("syncclass_devices_clock_skewed",
                     "Devices whose clock is further off the fleet's than clock_skew_s",
                     sum(1 for d in devices if d.skewed), "gauge")
        yield Sample("syncclass_seq_missing", "Sequence numbers skipped and not received",
                     sum(d.seq.gaps for d in devices), "gauge")
        yield Sample("syncclass_seq_duplicates_total", "Duplicate (device, seq) messages",
                     sum(d.seq.duplicates for d in devices))
        yield Sample("syncclass_seq_jumps_adopted_total",
                     "Seq jumps believed after consecutive seqs confirmed them",
                     sum(d.seq.jumps_adopted for d in devices))
        yield Sample("syncclass_status_stale_ignored_total",
                     "Status messages of an older session, ignored", self.stale_status_ignored)

    # ------------------------------------------------------------ helpers

    def _tracker(self, high: int = -1, gaps: int = 0, duplicates: int = 0,
                 ceiling: int = -1) -> SeqTracker:
        return SeqTracker(high=high, gaps=gaps, duplicates=duplicates, jump=self._seq_jump,
                          confirm=self._seq_confirm, ceiling=ceiling)

    def _device(self, device_id: str) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            dev = self._devices[device_id] = _Device(seq=self._tracker())
        return dev

    def _heard(self, device_id: str, dev: _Device) -> None:
        dev.last_seen = self._clock()
        self._dirty.add(device_id)

    def _interval(self, dev: _Device) -> float:
        return dev.interval or self._default_interval

    def _status(self, device_id: str, dev: _Device) -> DeviceStatus:
        """The device's state sharing its dicts (see ``flush`` for why that is safe)."""
        return DeviceStatus(
            device_id=device_id,
            online=dev.online,
            session=dev.session,
            agent_version=dev.agent_version,
            last_seen=dev.last_seen,
            last_seq=max(dev.seq.high, dev.seq.ceiling),  # its own line or the shared row
            seq_gaps=dev.seq.gaps,
            seq_duplicates=dev.seq.duplicates,
            interval=self._interval(dev),
            inventory=dev.inventory,
            telemetry=dev.telemetry,
            telemetry_at=dev.telemetry_at,
            status_at=dev.status_at,
            clock_offset_s=max(dev.offsets) if dev.offsets else None,
        )


def _private(status: DeviceStatus) -> DeviceStatus:
    """Copies of the dicts for callers, made outside the lock, so a caller that edits
    them can never change the state."""
    return dataclasses.replace(status, inventory=copy.deepcopy(status.inventory),
                               telemetry=copy.deepcopy(status.telemetry))


def _row(device_id: str, dev: _Device) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "online": dev.online,
        "session": dev.session,
        "agent_version": dev.agent_version,
        "last_seen": dev.last_seen,
        "last_seq": dev.seq.high,
        "seq_gaps": dev.seq.gaps,
        "seq_duplicates": dev.seq.duplicates,
        "inventory": dev.inventory,
        "telemetry": dev.telemetry,
        "telemetry_at": dev.telemetry_at,
        "birth_at": dev.birth_at,
        "status_at": dev.status_at,
    }


def _write(session: Session, rows: list[dict[str, Any]], believable: datetime,
           holder: str) -> int:
    """Upsert the rows of devices still in the inventory, merging with what is stored in
    the statement itself (:func:`_merged`), under the row lock: a row another fleet
    process wrote since anyone read it is merged with, never overwritten.  Rows go in
    device-id order, so two processes flushing overlapping devices lock them in the
    same order and cannot deadlock."""
    known = set(session.scalars(
        select(Device.id).where(Device.id.in_([r["device_id"] for r in rows]))
    ))
    kept = sorted((r for r in rows if r["device_id"] in known), key=lambda r: r["device_id"])
    if not kept:
        return 0
    upsert = insert_on_conflict(session, _TABLE)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=[_TABLE.c.device_id], set_=_merged(upsert.excluded, believable)
        ),
        kept,
    )
    marks = [{"holder": holder, "device_id": r["device_id"], "last_seq": r["last_seq"]}
             for r in kept if r["last_seq"] >= 0]
    if marks:
        # Only this process writes its own marks: the latest is right, even a lower one
        # (a reinstalled agent started counting again).
        mark = insert_on_conflict(session, _MARKS)
        session.execute(mark.on_conflict_do_update(
            index_elements=[_MARKS.c.holder, _MARKS.c.device_id],
            set_={"last_seq": mark.excluded.last_seq}), marks)
    return len(kept)


def _newer(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    """The later of two nullable values (SQLite's max() would give NULL)."""
    return case((b.is_(None), a), (a.is_(None), b), (a > b, a), else_=b)


def _merged(snap: ReadOnlyColumnCollection[str, Any], believable: datetime
            ) -> dict[str, ColumnElement[Any]]:
    """The SET clause: the stored row (``_TABLE.c``) merged with the snapshot.

    The newer connection's status wins: a higher session, or whatever session a later
    birth stamp (a reinstalled agent counts its sessions from 1 again), by the rule of
    ``DeviceStates._born``; the same connection's keeps the highest seq.  The newer
    telemetry wins, unless the stored stamp is beyond belief (written before the ingest
    judged ts).  ``last_seen`` is the latest either side heard the device."""
    old = _TABLE.c
    births = and_(snap.birth_at.is_not(None), old.birth_at.is_not(None))
    later = or_(snap.session > old.session, and_(births, snap.birth_at > old.birth_at))
    earlier = and_(births, snap.birth_at < old.birth_at)
    same = and_(not_(later), not_(earlier), snap.session == old.session)
    status = or_(later, same)
    telemetry = and_(
        snap.telemetry_at.is_not(None),
        or_(old.telemetry_at.is_(None), snap.telemetry_at >= old.telemetry_at,
            old.telemetry_at > believable),
    )
    merged: dict[str, ColumnElement[Any]] = {
        "seq_gaps": snap.seq_gaps,
        "seq_duplicates": snap.seq_duplicates,
        "last_seen": _newer(old.last_seen, snap.last_seen),
        "last_seq": case(
            (later, snap.last_seq),  # the agent's counter may have restarted
            (same, _newer(old.last_seq, snap.last_seq)),
            else_=old.last_seq,
        ),
    }
    for name in ("session", "online", "agent_version", "inventory", "birth_at",
                 "status_at"):
        merged[name] = case((status, snap[name]), else_=old[name])
    for name in ("telemetry", "telemetry_at"):
        merged[name] = case((telemetry, snap[name]), else_=old[name])
    return merged
