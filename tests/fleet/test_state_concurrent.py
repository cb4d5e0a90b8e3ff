"""Two fleet processes flushing device state into one PostgreSQL at the same time
(issue 7): rows are locked in one order, so no deadlock, and each row is merged with what
is stored under its lock, so neither process's newer state is lost."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from agent.contract import Kind
from fleet.db.base import make_engine, session_scope
from fleet.db.models import Device, DeviceState
from fleet.state import DeviceStates
from tests.clock import ManualClock
from tests.fleet.ingest_helpers import inventory_db, status, telemetry
from tests.fleet.pg import fresh_database
from tests.fleet.race import at_once
from tests.fleet.test_state import feed

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
DEVICES = [f"dev-{i:03d}" for i in range(400)]
ROUNDS = 20


def test_concurrent_flush_rounds_of_two_processes_neither_deadlock_nor_lose_updates(
    tmp_path: Path, postgres: str
) -> None:
    url = fresh_database(postgres, f"flush_{uuid.uuid4().hex[:8]}")
    with session_scope(inventory_db(tmp_path, url)) as s:
        room = s.scalars(select(Device.classroom_id)).first()
        s.add_all(Device(id=d, classroom_id=room) for d in DEVICES)
    clocks = ManualClock(T0), ManualClock(T0)
    engines = [make_engine(url) for _ in range(3)]  # two processes and the test's eye
    a, b = (DeviceStates(sessionmaker(e), clock=c) for e, c in zip(engines, clocks, strict=False))
    for states in (a, b):
        for device in DEVICES:
            feed(states, Kind.STATUS, status(device, "online", 1, 0))
    a.flush()  # the rows exist, as in a running fleet
    # Mosquitto's round-robin: the second process sees three devices of four; of those
    # it saw, half its telemetry is the newer.  (Different sets also iterate in different
    # orders, which is what deadlocked the flush when it wrote rows in set order.)
    seen_by_b = [d for i, d in enumerate(DEVICES) if i % 4]
    for r in range(ROUNDS):
        base = T0 + timedelta(minutes=r + 1)
        # The fleet orders by its own receive time: in even rounds the second process
        # heard the device last, in odd rounds the first (the agents' own stamps, which
        # disagree, do not count).
        late, early = base + timedelta(seconds=2), base + timedelta(seconds=1)
        clocks[0].set(early if r % 2 == 0 else late)
        clocks[1].set(late if r % 2 == 0 else early)
        expected: dict[str, tuple[datetime, str, datetime]] = {}
        for i, device in enumerate(DEVICES):
            at = base + timedelta(seconds=2 if i % 2 else 1)
            feed(a, Kind.TELEMETRY, telemetry(device, 2 * r + 1, at, {"from": f"a{r}"}))
            expected[device] = (clocks[0](), f"a{r}", clocks[0]())
        for i, device in enumerate(DEVICES):
            if device not in seen_by_b:
                continue
            at = base + timedelta(seconds=1 if i % 2 else 2)
            feed(b, Kind.TELEMETRY, telemetry(device, 2 * r + 2, at, {"from": f"b{r}"}))
            if clocks[1]() > clocks[0]():
                expected[device] = (clocks[1](), f"b{r}", clocks[1]())
        at_once(a.flush, b.flush)
        with session_scope(sessionmaker(engines[2])) as s:
            stored = {
                row.device_id: (row.telemetry_at, row.telemetry["sections"]["from"],
                                row.last_seen)
                for row in s.scalars(select(DeviceState))
            }
        assert stored == expected, f"round {r}"
    for engine in engines:
        engine.dispose()


def test_two_processes_writing_the_first_rows_at_once_both_succeed(
    tmp_path: Path, postgres: str
) -> None:
    """Both insert the same new devices: the later one merges instead of failing on the
    primary key (it used to fail, and its whole chunk waited for the next flush)."""
    url = fresh_database(postgres, f"flush_{uuid.uuid4().hex[:8]}")
    with session_scope(inventory_db(tmp_path, url)) as s:
        room = s.scalars(select(Device.classroom_id)).first()
        s.add_all(Device(id=d, classroom_id=room) for d in DEVICES)
    engines = [make_engine(url) for _ in range(3)]
    a, b = (DeviceStates(sessionmaker(e)) for e in engines[:2])
    for states, session in ((a, 1), (b, 2)):
        for device in DEVICES:
            feed(states, Kind.STATUS, status(device, "online", session, 0))
    at_once(a.flush, b.flush)
    with session_scope(sessionmaker(engines[2])) as s:
        sessions = set(s.scalars(select(DeviceState.session)))
    assert sessions == {2}  # every row: the newer connection, whoever wrote last
    for engine in engines:
        engine.dispose()
