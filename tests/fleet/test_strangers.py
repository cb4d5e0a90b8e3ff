"""Agents the inventory refuses are listed and ticketed once, through the real validator
fed the contract's own encoding of what an agent sends; quiet, their ticket resolves."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from agent import contract
from agent.contract import DEFAULT_PREFIX, Kind
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertState, Device
from fleet.ingest.strangers import Strangers
from fleet.ingest.validate import Validator, load_enabled_devices
from tests.fleet.alert_helpers import World, build_world


def _world(tmp_path: Path) -> tuple[World, Strangers, Validator]:
    world = build_world(tmp_path)
    with session_scope(world.sessions) as s:  # rural-1 is taken out of service
        s.execute(update(Device).where(Device.id == "rural-1").values(enabled=False))
    strangers = Strangers(world.sessions, world.clock, report=world.engine.stranger,
                          report_every_s=300, quiet_s=900)
    validator = Validator(DEFAULT_PREFIX, lambda: load_enabled_devices(world.sessions),
                          on_unknown=strangers.seen)
    return world, strangers, validator


def _telemetry(world: World, device_id: str) -> tuple[str, bytes]:
    world.seq += 1
    body = {**contract.envelope(device_id, world.seq, world.clock()), "interval": 15.0,
            "sections": {}}
    return contract.topic(DEFAULT_PREFIX, device_id, Kind.TELEMETRY), contract.encode(body)


def _alerts(world: World) -> list[Alert]:
    with session_scope(world.sessions) as s:
        rows = list(s.query(Alert).order_by(Alert.id))
        s.expunge_all()
        return rows


def test_a_disabled_device_still_talking_is_one_entry_and_one_ticket_at_its_school(
    tmp_path: Path,
) -> None:
    world, strangers, validator = _world(tmp_path)
    for _ in range(40):  # ten minutes of a chatty agent, every 15 s
        assert validator.check(*_telemetry(world, "rural-1")) is None  # still refused
        world.tick_after(15)
    [entry] = strangers.list()
    assert (entry.device_id, entry.disabled, entry.classroom_id) == (
        "rural-1", True, world.rural_room)
    assert entry.messages == 40 and entry.topic.endswith("/rural-1/telemetry")
    assert validator.refused["unknown-device"] == 40
    [alert] = _alerts(world)
    assert (alert.rule, alert.classroom_id, alert.state) == (
        "device_not_enrolled", world.rural_room, AlertState.FIRING)
    assert "停用" in alert.summary_zh and "disabled" in alert.summary_en
    # Its school's technician hears of it once: the classroom's notice, not forty.
    assert {n.target for n in world.notifications("firing")} >= {"lin@luxi.example.cn"}
    assert len({n.alert_id for n in world.notifications("firing")}) == 1

    world.tick_after(900)  # quiet for quiet_s: unlisted, and the ticket resolves
    strangers.tick()
    world.tick_after(60)
    assert strangers.list() == []
    assert [a.state for a in _alerts(world)] == [AlertState.RESOLVED]


def test_an_unknown_device_is_listed_without_a_place(tmp_path: Path) -> None:
    world, strangers, validator = _world(tmp_path)
    validator.check(*_telemetry(world, "nowhere-9"))
    [entry] = strangers.list()
    assert (entry.disabled, entry.classroom_id, entry.messages) == (False, None, 1)
    [alert] = _alerts(world)
    assert (alert.rule, alert.device_id, alert.classroom_id) == (
        "device_not_enrolled", "nowhere-9", None)
