"""One device's messages handled by two fleet processes keep the agent's order (issue 7).

Two alert engines with their own database engines stand for two fleet processes on one
database.  Each stamps a message with its own receive time, so a fault one process
handles after the other handled the later clear must be recognised by the agent's
(session, seq), not by when it arrived.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, select

from agent.contract import Kind
from fleet.alerts import AlertEngine
from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.models import Alert, AlertState, DeviceState
from tests.fleet.alert_helpers import World, build_world, payload
from tests.fleet.pg import fresh_database

DEVICE = "rural-1"
FULL = {"system": {"ok": False, "reason": "disk_full", "disk_pct": 97.0, "clock_synced": True}}
FINE = {"system": {"ok": True, "disk_pct": 40.0, "clock_synced": True}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return fresh_database(request.getfixturevalue("postgres"), f"order_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pair(tmp_path: Path, url: str) -> tuple[World, AlertEngine, AlertEngine]:
    """The county, its engine (process A) and a second one on its database (process B),
    both having heard the device's birth of session 3 at seq 10."""
    world = build_world(tmp_path, url=url)
    other = AlertEngine(SessionFactory(bind=make_engine(url), expire_on_commit=False),
                        world.engine.config, clock=world.clock)
    for engine in (world.engine, other):
        birth(engine, world, session=3, seq=10)
    return world, world.engine, other


def birth(engine: AlertEngine, world: World, session: int, seq: int) -> None:
    engine.on_status(DEVICE, payload(Kind.STATUS, DEVICE, world.clock(), seq, state="online",
                                     agent_version="1.0", session=session))


def report(engine: AlertEngine, world: World, seq: int, sections: dict[str, object]) -> None:
    engine.on_telemetry(DEVICE, payload(Kind.TELEMETRY, DEVICE, world.clock(), seq,
                                        interval=15, sections=sections))


def disk_tickets(world: World) -> list[tuple[AlertState, list[str]]]:
    with session_scope(world.sessions) as s:
        rows = s.scalars(select(Alert).where(Alert.rule == "disk_full").order_by(Alert.id))
        return [(a.state, [e.kind for e in a.events]) for a in rows]


def test_a_fault_handled_after_its_later_clear_by_another_process_changes_nothing(
    pair: tuple[World, AlertEngine, AlertEngine],
) -> None:
    world, a, b = pair
    report(a, world, 11, FULL)
    world.tick_after(1)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.FIRING]

    # The agent sent fault 12 then clear 13; A handles the clear first, B the fault later.
    world.clock.advance(1)
    report(a, world, 13, FINE)
    world.clock.advance(0.2)
    report(b, world, 12, FULL)
    world.tick_after(61)  # past disk_full's down-delay
    (state, events), = disk_tickets(world)
    assert state is AlertState.RESOLVED
    assert "still_failing" not in events

    # Resolved, then the stale fault again (a redelivery to B): no ticket reopens.
    world.clock.advance(5)
    report(b, world, 12, FULL)
    world.tick_after(61)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.RESOLVED]

    # The agent's next fault is news wherever it is handled: the same ticket returns.
    report(b, world, 14, FULL)
    world.tick_after(1)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.FIRING]


def test_a_newer_session_wins_over_a_higher_seq_of_an_older_one(
    pair: tuple[World, AlertEngine, AlertEngine],
) -> None:
    world, a, b = pair
    report(a, world, 11, FULL)
    world.tick_after(1)
    # Reconnected as session 4; its clear reaches A, a late message of session 3 reaches B
    # which has not heard the new birth yet (its order says (3, 12): older than (4, 12)).
    birth(a, world, session=4, seq=11)
    report(a, world, 12, FINE)
    world.clock.advance(0.5)
    report(b, world, 12, FULL)
    world.tick_after(61)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.RESOLVED]


def test_signals_without_a_seq_and_a_reinstalled_agent_still_work(
    pair: tuple[World, AlertEngine, AlertEngine],
) -> None:
    world, a, b = pair
    report(a, world, 11, FULL)
    report(a, world, 12, FINE)
    world.tick_after(61)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.RESOLVED]

    # The fleet's own signals have no seq: silence opens and the next report ends it.
    b.device_silent(DEVICE)
    with session_scope(world.sessions) as s:
        silent = s.scalars(select(Alert.state).where(Alert.rule == "device_silent")).all()
    assert silent == [AlertState.FIRING]
    world.clock.advance(1)
    report(b, world, 13, FINE)
    world.tick_after(61)
    with session_scope(world.sessions) as s:
        silent = s.scalars(select(Alert.state).where(Alert.rule == "device_silent")).all()
    assert silent == [AlertState.RESOLVED]

    # Re-imaged: sessions and seqs start again from 1, below the ticket's (3, 12); its
    # first fault is news, not stale.
    world.clock.advance(60)
    birth(a, world, session=1, seq=0)
    report(a, world, 1, FULL)
    world.tick_after(1)
    assert disk_tickets(world)[-1][0] is AlertState.FIRING


def test_a_restarted_process_orders_its_backlog_before_hearing_any_birth(
    pair: tuple[World, AlertEngine, AlertEngine], url: str,
) -> None:
    world, a, _b = pair
    report(a, world, 11, FULL)
    world.tick_after(1)
    report(a, world, 13, FINE)
    world.tick_after(61)
    with session_scope(world.sessions) as s:  # what the device state flushes
        s.add(DeviceState(device_id=DEVICE, session=3, last_seq=13))
    # Restarted with a persistent session: its backlog comes before the retained births.
    bind = make_engine(url)
    statements: list[str] = []
    event.listen(bind, "before_cursor_execute", lambda *args: statements.append(args[2]))
    restarted = AlertEngine(SessionFactory(bind=bind, expire_on_commit=False),
                            world.engine.config, clock=world.clock)
    for _ in range(2):  # the backlog redelivered
        report(restarted, world, 12, FULL)
    world.tick_after(1)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.RESOLVED]
    # The stored session is read once, not for every message of the backlog.
    assert len([s for s in statements if "FROM device_state" in s]) == 1
    # Then the retained birth, below the seqs it just handled: not a reinstall.
    birth(restarted, world, session=3, seq=10)
    report(restarted, world, 12, FULL)
    world.tick_after(1)
    assert [state for state, _ in disk_tickets(world)] == [AlertState.RESOLVED]
