"""One fault, one ticket, however many fleet processes see it (issue 7).

Two alert engines with their own database engines and session factories stand for two
fleet processes on one database; threads deliver the same Last Will to both at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agent.contract import Kind
from fleet.alerts import AlertEngine
from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.models import Alert, AlertEvent, AlertState, Device
from tests.fleet.alert_helpers import START, World, build_world, payload
from tests.fleet.pg import fresh_database
from tests.fleet.race import at_once

DEVICES = [f"rural-{i}" for i in range(1, 21)]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return fresh_database(request.getfixturevalue("postgres"), f"ident_{uuid.uuid4().hex[:8]}")


def two_processes(tmp_path: Path, url: str) -> tuple[World, AlertEngine]:
    """The county with twenty rural devices, and a second engine on its database."""
    world = build_world(tmp_path, url=url)
    with session_scope(world.sessions) as s:
        s.add_all(Device(id=d, classroom_id=world.rural_room) for d in DEVICES[1:])
    other = SessionFactory(bind=make_engine(url), expire_on_commit=False)
    return world, AlertEngine(other, world.engine.config, clock=world.clock)


def status_to(engine: AlertEngine, world: World, state: str) -> Callable[[], None]:
    def deliver() -> None:
        for seq, device in enumerate(DEVICES):
            body = payload(Kind.STATUS, device, world.clock(), seq, state=state,
                           agent_version="1.0", session=1)
            engine.on_status(device, body)
    return deliver


def tickets(world: World) -> dict[str, list[AlertState]]:
    with session_scope(world.sessions) as s:
        rows = s.execute(select(Alert.device_id, Alert.state).order_by(Alert.id))
        found: dict[str, list[AlertState]] = {}
        for device, state in rows:
            found.setdefault(device, []).append(state)
        return found


def test_two_processes_racing_on_one_last_will_open_one_ticket_and_clearing_resolves_it(
    tmp_path: Path, url: str
) -> None:
    world, other = two_processes(tmp_path, url)
    for _round in range(3):  # offline, then online inside the up-delay: nothing stays
        at_once(status_to(world.engine, world, "offline"), status_to(other, world, "offline"))
        assert tickets(world) == {d: [AlertState.PENDING] for d in DEVICES}
        at_once(status_to(world.engine, world, "online"), status_to(other, world, "online"))
        assert tickets(world) == {}
        world.clock.advance(1)

    at_once(status_to(world.engine, world, "offline"), status_to(other, world, "offline"))
    world.tick_after(31)  # past the 30 s up-delay
    other.tick()
    assert tickets(world) == {d: [AlertState.FIRING] for d in DEVICES}
    with session_scope(world.sessions) as s:
        pending = s.scalar(select(func.count()).where(AlertEvent.kind == "pending"))
    assert pending == len(DEVICES)  # the loser took up the winner's ticket, told nobody

    # "Online" reaches only the second process; the ticket it clears is the only one.
    status_to(other, world, "online")()
    world.clock.advance(31)
    other.tick()
    world.engine.tick()
    assert tickets(world) == {d: [AlertState.RESOLVED] for d in DEVICES}


def test_the_database_refuses_a_second_unresolved_ticket(tmp_path: Path, url: str) -> None:
    sessions = build_world(tmp_path, url=url).sessions

    def ticket(state: AlertState) -> Alert:
        return Alert(fingerprint="device_offline|rural-1|", rule="device_offline",
                     severity="critical", state=state, device_id="rural-1",
                     started_at=START, last_seen_at=START)

    with session_scope(sessions) as s:
        s.add_all([ticket(AlertState.RESOLVED), ticket(AlertState.RESOLVED)])  # history
        s.add(ticket(AlertState.FIRING))
    with pytest.raises(IntegrityError), session_scope(sessions) as s:
        s.add(ticket(AlertState.PENDING))
