"""The engine's in-memory picture: open tickets per device, and device places.

A healthy classroom's telemetry must cost no database work (statements are counted on
the real SQLite engine); tickets another fleet process writes are picked up at the next
re-sync; a moved device is found at its new place after ``reload_inventory``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, update

from agent.contract import Kind
from fleet.actions.config import ActionConfig
from fleet.alerts import AlertConfig, AlertEngine
from fleet.app import Fleet
from fleet.config import DatabaseConfig, FleetConfig
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertState, Device
from tests.clock import ManualClock
from tests.fleet.alert_helpers import START, World, build_world, payload

HEALTHY = {
    "cameras": {"ok": True, "devices": [{"id": "c0", "name": "Teacher camera", "ok": True}]},
    "system": {"ok": True, "cpu_pct": 20.0, "disk_pct": 35.0, "clock_synced": True},
}
BLACK = {"cameras": {"ok": False, "devices": [{"id": "c0", "ok": False,
                                               "reason": "camera_black"}]}}


class Statements:
    """Every SQL statement the engine's database sees, counted at the cursor."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        self._engine = engine

    def _record(self, *args: Any) -> None:
        self.seen.append(args[2])

    def __enter__(self) -> Statements:
        event.listen(self._engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def db(world: World) -> Engine:
    bind = world.sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def telemetry(world: World, sections: dict[str, Any], device: str = "rural-1") -> None:
    world.send(Kind.TELEMETRY, device, interval=15, sections=sections)


def states(world: World, rule: str) -> list[AlertState]:
    with session_scope(world.sessions) as s:
        return [a.state for a in AlertEngine.query(s, rule=rule, include_pending=True)]


def test_healthy_telemetry_and_online_status_touch_no_database(world: World) -> None:
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
        world.send(Kind.STATUS, "rural-1", state="online", agent_version="1.0", session=1)
    assert sql.seen == []
    assert world.engine.signals_observed["device_silent"] == 1  # still counted


def test_a_device_with_an_open_ticket_is_read_until_it_resolves(world: World) -> None:
    telemetry(world, BLACK)
    world.tick_after(1)
    assert states(world, "camera_black") == [AlertState.FIRING]
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)  # clears it: needs the ticket
    assert sql.seen
    world.tick_after(21)  # down-delay 20 s
    assert states(world, "camera_black") == [AlertState.RESOLVED]
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
    assert sql.seen == []


def test_a_pending_fault_that_clears_leaves_the_device_quiet(world: World) -> None:
    world.send(Kind.STATUS, "rural-1", state="offline", agent_version="1.0", session=1)
    world.send(Kind.STATUS, "rural-1", state="online", agent_version="1.0", session=1)
    assert states(world, "device_offline") == []  # forgotten inside its up-delay
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
    assert sql.seen == []


def test_manual_resolution_and_acknowledgement_keep_the_index_in_step(world: World) -> None:
    telemetry(world, BLACK)
    world.tick_after(1)
    with session_scope(world.sessions) as s:
        [alert_id] = [a.id for a in AlertEngine.query(s, rule="camera_black")]
    world.engine.acknowledge(alert_id, "lin", "on my way")
    with Statements(db(world)) as sql:
        telemetry(world, BLACK)  # still open after the acknowledgement: it is read
    assert sql.seen
    world.engine.resolve_manually(alert_id, "lin", "camera replaced")
    # Resolved while still reported black: it waits for the device's all-clear, which
    # is read once; after that the healthy device is quiet again.
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
    assert sql.seen
    with session_scope(world.sessions) as s:
        confirmed = s.get_one(Alert, alert_id)
        assert (confirmed.state, confirmed.awaiting_device) == (AlertState.RESOLVED, False)
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
    assert sql.seen == []


def test_a_ticket_opened_by_another_fleet_process_is_resolved_after_the_resync(
    world: World,
) -> None:
    other = AlertEngine(world.sessions, world.engine.config, clock=world.clock)
    other.on_telemetry("rural-1", _body(world, BLACK))
    other.tick()
    assert states(world, "camera_black") == [AlertState.FIRING]

    telemetry(world, HEALTHY)  # this process has not looked yet: nothing changes
    world.tick_after(25)
    assert states(world, "camera_black") == [AlertState.FIRING]

    world.tick_after(10)  # past index_resync_s (30 s): this process now knows the ticket
    telemetry(world, HEALTHY)
    world.tick_after(21)
    assert states(world, "camera_black") == [AlertState.RESOLVED]


def test_a_ticket_closed_by_another_process_stops_costing_queries(world: World) -> None:
    telemetry(world, BLACK)
    world.tick_after(1)
    with session_scope(world.sessions) as s:  # another process resolved it behind our back
        s.execute(update(Alert).values(state=AlertState.RESOLVED, resolved_at=world.clock()))
    telemetry(world, HEALTHY)  # reads the ticket, finds it closed, forgets it
    with Statements(db(world)) as sql:
        telemetry(world, HEALTHY)
    assert sql.seen == []


def test_resync_interval_is_configurable_and_validated() -> None:
    assert AlertConfig().index_resync_s == 30.0
    with pytest.raises(ValueError, match="index_resync_s"):
        AlertConfig(index_resync_s=-1)


def _body(world: World, sections: dict[str, Any]) -> dict[str, Any]:
    world.seq += 1
    return payload(Kind.TELEMETRY, "rural-1", world.clock(), world.seq, interval=15,
                   sections=sections)


def _move(world: World, device: str, classroom: int) -> None:
    with session_scope(world.sessions) as s:
        s.execute(update(Device).where(Device.id == device).values(classroom_id=classroom))


def _classrooms(world: World, rule: str) -> list[int | None]:
    with session_scope(world.sessions) as s:
        return [a.classroom_id for a in AlertEngine.query(s, rule=rule, include_pending=True)]


def test_reload_inventory_finds_a_moved_device(world: World) -> None:
    telemetry(world, BLACK)
    assert _classrooms(world, "camera_black") == [world.rural_room]
    _move(world, "rural-1", world.town_room)
    world.send(Kind.STATUS, "rural-1", state="offline", agent_version="1.0", session=1)
    assert _classrooms(world, "device_offline") == [world.rural_room]  # cached place

    world.engine.reload_inventory()
    telemetry(world, {"system": {"ok": False, "reason": "disk_full"}})
    assert _classrooms(world, "disk_full") == [world.town_room]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    config = FleetConfig(
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'fleet.db'}"),
        actions=ActionConfig(key_file=tmp_path / "fleet.key"),
    )
    built = Fleet(config, clock=ManualClock(START))  # not started: reloading needs no broker
    try:
        yield built
    finally:
        built.close()


def test_fleet_reload_inventory_reloads_the_alert_engines_places(
    fleet: Fleet, tmp_path: Path
) -> None:
    world = build_world(tmp_path, url=str(fleet.engine.url))  # the county in the fleet's DB
    world.engine = fleet.alerts
    telemetry(world, BLACK)
    _move(world, "rural-1", world.town_room)
    fleet.reload_inventory()
    telemetry(world, {"system": {"ok": False, "reason": "disk_full"}})
    assert _classrooms(world, "disk_full") == [world.town_room]


def test_a_device_added_later_is_placed_without_a_reload(world: World) -> None:
    telemetry(world, BLACK, device="new-1")  # unknown yet: no classroom
    assert _classrooms(world, "camera_black") == [None]
    with session_scope(world.sessions) as s:
        s.add(Device(id="new-1", classroom_id=world.rural_room))
    telemetry(world, {"system": {"ok": False, "reason": "disk_full"}}, device="new-1")
    assert _classrooms(world, "disk_full") == [world.rural_room]
