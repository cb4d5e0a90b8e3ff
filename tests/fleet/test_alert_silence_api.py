"""Silencing from an alert (POST /alerts/{id}/silence): this rule at this device, from
the fleet's clock for the minutes asked; the engine's next pass mutes that alert and no
other; out of scope is 404, a bad duration or an empty reason 422, and nothing is made."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from fleet.db.base import session_scope
from fleet.db.models import Alert, Silence
from tests.fleet.api_world import World, world

__all__ = ["world"]

LUXI, SHIYAN = "dongtou-luxi-sync1", "dongtou-shiyan-sync1"


def test_silence_from_an_alert_mutes_that_alert_for_its_minutes(world: World) -> None:
    luxi, shiyan = world.take_offline(LUXI), world.take_offline(SHIYAN)
    path = f"/api/v1/alerts/{luxi}/silence"
    for bad in ({"minutes": 1, "comment": "x"}, {"minutes": 60, "comment": ""},
                {"minutes": 60 * 24 * 8, "comment": "x"}):
        assert world.post("dt-luxi-tech", path, json=bad).status_code == 422, bad
    # Another school's alert is not there for this technician.
    other = world.post("dt-luxi-tech", f"/api/v1/alerts/{shiyan}/silence",
                       json={"minutes": 60, "comment": "x"})
    assert other.status_code == 404
    with session_scope(world.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Silence)) == 0

    reply = world.post("dt-luxi-tech", path, json={"minutes": 90, "comment": "已报修"})
    assert reply.status_code == 201, reply.text
    silence = reply.json()
    assert silence["matchers"] == {"rule": "device_offline", "device_id": LUXI}
    starts = datetime.fromisoformat(silence["starts_at"])
    assert starts == world.clock()
    assert datetime.fromisoformat(silence["ends_at"]) - starts == timedelta(minutes=90)
    assert silence["comment"] == f"告警 alert #{luxi}: 已报修"

    world.alerts.tick()
    with session_scope(world.sessions) as session:
        muted = dict(session.execute(select(Alert.id, Alert.suppressed_by)).tuples().all())
    assert muted[luxi] is not None and muted[shiyan] is None, muted
    world.clock.advance(minutes=91)
    world.alerts.tick()
    with session_scope(world.sessions) as session:
        assert session.get_one(Alert, luxi).suppressed_by is None  # over: heard again
