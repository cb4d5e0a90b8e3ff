"""Maintenance windows and holidays through the API, with the real alert engine: a window
made by a technician holds back the notification of a matching alert, and only that one;
windows are pinned to what the person looks after; bad days and times are refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from fleet.db.base import session_scope
from fleet.db.models import (
    AlertEvent,
    CalendarDay,
    County,
    MaintenanceWindow,
    Notification,
    School,
)
from tests.fleet.api_world import World, world

__all__ = ["world"]

LUXI = "dongtou-luxi-sync1"
SHIYAN = "dongtou-shiyan-sync1"
# The world's clock says Monday 09:30 in Shanghai.
MONDAY_MORNING = {
    "name": "鹿西周一上午检修 Monday repairs",
    "weekdays": [0],
    "start_time": "09:00",
    "end_time": "12:00",
}


def _school_id(world: World, name: str) -> int:
    with session_scope(world.sessions) as session:
        return session.scalars(select(School.id).where(School.name == name)).one()


def _county_id(world: World, name: str) -> int:
    with session_scope(world.sessions) as session:
        return session.scalars(select(County.id).where(County.name == name)).one()


def _notifications(world: World, alert_id: int) -> int:
    with session_scope(world.sessions) as session:
        query = select(func.count()).where(Notification.alert_id == alert_id)
        return session.scalar(query) or 0


def _delete(world: World, username: str, path: str) -> int:
    status: int = world.client.delete(path, headers=world.headers(username)).status_code
    return status


def _flush_notices(world: World) -> None:
    world.clock.advance(seconds=60)  # past group_wait
    world.alerts.tick()


def test_window_mutes_the_matching_alert_until_deleted(world: World) -> None:
    made = world.post(
        "dt-luxi-tech",
        "/api/v1/maintenance-windows",
        json={**MONDAY_MORNING, "matchers": {"device_id": LUXI}},
    )
    assert made.status_code == 201, made.text
    window = made.json()
    assert window["timezone"] == "Asia/Shanghai"
    assert window["matchers"] == {"device_id": LUXI}
    assert world.get("dt-luxi-tech", "/api/v1/maintenance-windows").json() == [window]

    muted = world.take_offline(LUXI)
    told = world.take_offline(SHIYAN)  # same county, not in the window
    _flush_notices(world)
    alert = world.get("dt-luxi-tech", f"/api/v1/alerts/{muted}").json()
    assert alert["suppressed_by"].startswith(f"maintenance #{window['id']} ")
    assert [e["kind"] for e in alert["events"]][-1] == "suppressed"
    assert _notifications(world, muted) == 0
    assert _notifications(world, told) > 0

    assert _delete(world, "dt-luxi-tech", f"/api/v1/maintenance-windows/{window['id']}") == 204
    assert world.get("dt-luxi-tech", "/api/v1/maintenance-windows").json() == []
    world.alerts.tick()
    _flush_notices(world)
    assert world.get("dt-luxi-tech", f"/api/v1/alerts/{muted}").json()["suppressed_by"] is None
    assert _notifications(world, muted) > 0


def test_windows_are_pinned_to_what_the_person_looks_after(world: World) -> None:
    shantou = _school_id(world, "乐清市大荆镇山头小学")
    for matchers in (
        {"school_id": str(shantou)},
        {"device_id": "yueqing-shantou-sync1"},
        {"device_id": LUXI, "school_id": str(shantou)},
        {"rule": "device_offline"},
        {},
    ):
        refused = world.post(
            "dt-luxi-tech",
            "/api/v1/maintenance-windows",
            json={**MONDAY_MORNING, "matchers": matchers},
        )
        assert refused.status_code == 403, matchers
        assert "maintenance window" in refused.json()["detail"]
    county = world.post(
        "yq-dianjiao",
        "/api/v1/maintenance-windows",
        json={**MONDAY_MORNING, "matchers": {"county_id": str(_county_id(world, "乐清市"))}},
    )
    assert county.status_code == 201, county.text
    nights = world.post(
        "admin",
        "/api/v1/maintenance-windows",
        json={
            "name": "夜间 nights",
            "weekdays": list(range(7)),
            "start_time": "22:00",
            "end_time": "06:00",
        },
    )
    assert nights.status_code == 201, nights.text
    assert nights.json()["matchers"] == {}

    ids = {
        name: [w["id"] for w in world.get(name, "/api/v1/maintenance-windows").json()]
        for name in ("admin", "yq-dianjiao", "dt-luxi-tech")
    }
    # Everyone sees the windows that can mute their places: the fleet-wide nights and
    # their own county's; nobody sees another county's.
    assert ids == {
        "admin": [county.json()["id"], nights.json()["id"]],
        "yq-dianjiao": [county.json()["id"], nights.json()["id"]],
        "dt-luxi-tech": [nights.json()["id"]],
    }
    for username, window, status in (
        ("dt-luxi-tech", county, 404),  # another county's: not even there
        ("yq-dianjiao", nights, 403),  # seen, but only an admin removes a fleet-wide one
        ("dt-luxi-tech", nights, 403),
    ):
        path = f"/api/v1/maintenance-windows/{window.json()['id']}"
        assert _delete(world, username, path) == status
    own = f"/api/v1/maintenance-windows/{county.json()['id']}"
    assert _delete(world, "yq-dianjiao", own) == 204
    assert _delete(world, "yq-dianjiao", own) == 404
    assert _delete(world, "admin", "/api/v1/maintenance-windows/999") == 404


@pytest.mark.parametrize(
    "change",
    [
        {"weekdays": [7]},
        {"weekdays": [-1]},
        {"weekdays": []},
        {"weekdays": ["Monday"]},
        {"start_time": "24:00"},
        {"start_time": "9:00"},
        {"end_time": "12:60"},
        {"end_time": "١٢:٠٠"},  # Arabic-Indic digits: int() would take them
        {"end_time": None},
        {"timezone": "Asia"},  # a directory of zones, not a zone
        {"timezone": "Mars/Olympus"},
        {"name": ""},
        {"matchers": {"building": "A"}},
    ],
)
def test_bad_window_is_422_and_nothing_is_stored(world: World, change: dict[str, Any]) -> None:
    reply = world.post("admin", "/api/v1/maintenance-windows", json={**MONDAY_MORNING, **change})
    assert reply.status_code == 422, reply.text
    with session_scope(world.sessions) as session:
        assert session.scalars(select(MaintenanceWindow)).all() == []


def test_window_may_wrap_midnight_in_its_own_zone(world: World) -> None:
    reply = world.post(
        "admin",
        "/api/v1/maintenance-windows",
        json={
            "name": "周五夜间 Friday night",
            "weekdays": [4, 4],
            "start_time": "22:00",
            "end_time": "06:00",
            "timezone": "Asia/Urumqi",
            "matchers": {"rule": "disk_full"},
        },
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["weekdays"], body["start_time"], body["end_time"], body["timezone"]) == (
        [4],
        "22:00",
        "06:00",
        "Asia/Urumqi",
    )


def test_holidays_are_listed_from_today_and_by_range(world: World) -> None:
    with session_scope(world.sessions) as session:
        session.add_all(
            [
                CalendarDay(day=date(2026, 1, 1), name="元旦 New Year"),
                CalendarDay(day=date(2026, 4, 5), name="清明节 Qingming"),
                CalendarDay(day=date(2026, 5, 1), name="劳动节 Labour Day"),
            ]
        )
    ahead = world.get("dt-luxi-tech", "/api/v1/holidays").json()
    assert [(h["day"], h["name"], h["level"], h["runs_weekday"]) for h in ahead] == [
        ("2026-04-05", "清明节 Qingming", "province", None),
        ("2026-05-01", "劳动节 Labour Day", "province", None),
    ]
    spring = world.get(
        "dt-luxi-tech", "/api/v1/holidays", params={"from": "2026-01-01", "to": "2026-04-05"}
    ).json()
    assert [h["day"] for h in spring] == ["2026-01-01", "2026-04-05"]
    backwards = world.get(
        "dt-luxi-tech", "/api/v1/holidays", params={"from": "2026-05-01", "to": "2026-04-01"}
    )
    assert backwards.status_code == 422
    assert world.client.get("/api/v1/holidays").status_code == 401


def test_suppression_is_recorded_on_the_alert(world: World) -> None:
    """The muted alert's history says which window held its notification back."""
    luxi = _school_id(world, "洞头区鹿西乡小学")
    made = world.post(
        "dt-dianjiao",
        "/api/v1/maintenance-windows",
        json={**MONDAY_MORNING, "matchers": {"school_id": str(luxi)}},
    )
    assert made.status_code == 201, made.text
    alert_id = world.take_offline(LUXI)
    _flush_notices(world)
    with session_scope(world.sessions) as session:
        texts = session.scalars(
            select(AlertEvent.text).where(
                AlertEvent.alert_id == alert_id, AlertEvent.kind == "suppressed"
            )
        ).all()
    assert texts == [f"firing: maintenance #{made.json()['id']} {MONDAY_MORNING['name']}"]
