"""Mutes: inhibition by an offline device, silences, maintenance windows, holidays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from agent.contract import Kind
from fleet.alerts import AlertEngine
from fleet.alerts.mute import Maintenance
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertEvent, CalendarDay, Lesson, MaintenanceWindow
from tests.fleet.alert_helpers import World, build_world

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = build_world(tmp_path)
    with session_scope(w.sessions) as s:  # keep lesson-start escalation out of these tests
        s.get_one(Lesson, w.lesson_id).cancelled = True
    return w


def by_rule(world: World, rule: str) -> Alert:
    with session_scope(world.sessions) as s:
        [alert] = AlertEngine.query(s, rule=rule)
        s.expunge_all()
        return alert


def camera(world: World, event: str) -> None:
    world.send(Kind.EVENT, "rural-1", type=event, entity="camera:cam0")


def test_offline_device_inhibits_its_camera_alert_and_so_its_recovery(world: World) -> None:
    world.send(Kind.STATUS, "rural-1", state="offline", agent_version="1", session=1)
    world.tick_after(31)
    camera(world, "device_removed")  # e.g. spooled before the link dropped
    world.tick_after(31)
    world.tick_after(31)
    cam = by_rule(world, "camera_missing")
    assert cam.state == "firing"  # it exists and is queryable ...
    assert cam.suppressed_by is not None and "inhibited" in cam.suppressed_by
    firing = world.notifications("firing")
    assert firing and all("摄像头" not in n.body for n in firing)  # ... but is not told

    camera(world, "device_added")
    world.tick_after(21)
    world.tick_after(31)
    # Nobody was told the camera broke, so nobody is told it is fixed; the history says
    # so rather than going quiet.
    assert world.notifications("resolved") == []
    assert by_rule(world, "camera_missing").state == "resolved"
    with world.session() as session:
        texts = session.scalars(select(AlertEvent.text).where(
            AlertEvent.alert_id == cam.id, AlertEvent.kind == "recovery_skipped")).all()
    assert len(texts) == 1 and "lin@luxi.example.cn" in texts[0]
    assert by_rule(world, "device_offline").state == "firing"


def test_silence_mutes_with_its_reason_and_ends(world: World) -> None:
    now = world.clock()
    sid = world.engine.add_silence(
        {"device_id": "rural-1"}, now, now + timedelta(hours=1), "lin", "换摄像头 / swapping"
    )
    camera(world, "device_removed")
    world.tick_after(31)
    world.tick_after(31)
    alert = by_rule(world, "camera_missing")
    assert alert.suppressed_by == f"silence #{sid} by lin"
    assert world.notifications() == []
    with session_scope(world.sessions) as s:
        kinds = list(s.scalars(select(AlertEvent.kind).where(AlertEvent.alert_id == alert.id)))
    assert "muted" in kinds and "suppressed" in kinds

    world.engine.delete_silence(sid)  # the fault outlived the silence: now they hear of it
    world.tick_after(1)
    world.tick_after(31)
    assert by_rule(world, "camera_missing").suppressed_by is None
    assert world.notifications("firing")


def test_silence_that_does_not_match_mutes_nothing(world: World) -> None:
    now = world.clock()
    world.engine.add_silence({"device_id": "town-1"}, now, now + timedelta(hours=1), "x")
    camera(world, "device_removed")
    world.tick_after(31)
    world.tick_after(31)
    assert by_rule(world, "camera_missing").suppressed_by is None
    assert world.notifications("firing")


def test_bad_silences_are_refused(world: World) -> None:
    now = world.clock()
    later = now + timedelta(hours=1)
    with pytest.raises(ValueError, match="unknown matcher"):
        world.engine.add_silence({"room": "1"}, now, later, "x")
    with pytest.raises(ValueError, match="at least one"):
        world.engine.add_silence({}, now, later, "x")
    with pytest.raises(ValueError, match="end after"):
        world.engine.add_silence({"device_id": "a"}, later, now, "x")
    with pytest.raises(ValueError, match="timezone-aware"):
        world.engine.add_silence({"device_id": "a"}, now.replace(tzinfo=None), later, "x")
    with pytest.raises(ValueError, match="HH:MM"):
        world.engine.add_maintenance_window("夜间", [0], "25h", "06:00")
    with pytest.raises(ValueError, match="weekdays"):
        world.engine.add_maintenance_window("夜间", [7], "22:00", "06:00")


def test_maintenance_window_mutes_with_its_name(world: World) -> None:
    # Monday 09:00 local now: a window over Monday mornings covers it.
    world.engine.add_maintenance_window("周一系统升级", [0], "08:30", "09:30",
                                        {"school_id": str(world.rural_school)})
    camera(world, "device_removed")
    world.tick_after(31)
    world.tick_after(31)
    assert "周一系统升级" in (by_rule(world, "camera_missing").suppressed_by or "")
    assert world.notifications() == []
    world.tick_after(30 * 60)  # 09:31: the window is over, the fault is not
    world.tick_after(31)
    assert by_rule(world, "camera_missing").suppressed_by is None
    assert world.notifications("firing")


def test_holiday_mutes(world: World) -> None:
    with session_scope(world.sessions) as s:
        s.add(CalendarDay(day=world.clock().astimezone(ZONE).date(), name="校庆"))
    camera(world, "device_removed")
    world.tick_after(31)
    world.tick_after(31)
    assert "校庆" in (by_rule(world, "camera_missing").suppressed_by or "")
    assert world.notifications() == []


def _window(days: list[int], start: str, end: str) -> MaintenanceWindow:
    return MaintenanceWindow(id=1, name="n", matchers={}, weekdays=days, start_time=start,
                             end_time=end, timezone="Asia/Shanghai")


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        (datetime(2026, 11, 27, 23, 0, tzinfo=ZONE), True),  # Friday night
        (datetime(2026, 11, 28, 3, 0, tzinfo=ZONE), True),  # Sat: Friday's window wraps
        (datetime(2026, 11, 28, 7, 0, tzinfo=ZONE), False),
        (datetime(2026, 11, 27, 3, 0, tzinfo=ZONE), False),  # Thursday's window, not listed
        (datetime(2026, 11, 28, 23, 0, tzinfo=ZONE), False),  # Saturday night is not listed
    ],
)
def test_window_wrapping_midnight_belongs_to_its_start_day(local: datetime, inside: bool) -> None:
    when = local.astimezone(UTC)
    assert Maintenance.active(_window([4], "22:00", "06:00"), when) is inside


def test_a_broken_window_row_is_skipped_and_the_rest_still_work(world: World) -> None:
    with session_scope(world.sessions) as s:  # written around the API's validation
        s.add(MaintenanceWindow(name="坏", matchers={}, weekdays=[0], start_time="8 o'clock",
                                end_time="09:30", timezone="Asia/Shanghai"))
    world.engine.add_maintenance_window("周一", [0], "08:30", "09:30")
    camera(world, "device_removed")
    world.tick_after(31)
    assert "周一" in (by_rule(world, "camera_missing").suppressed_by or "")


@pytest.mark.parametrize("at_rural_school", [True, False])
def test_a_weekend_window_does_not_mute_a_make_up_workday_where_it_applies(
        world: World, at_rural_school: bool) -> None:
    world.clock.advance(days=6)  # Sunday 29 November, 09:00
    sunday = world.clock().astimezone(ZONE).date()
    assert sunday.isoweekday() == 7
    with session_scope(world.sessions) as s:
        # 调休 Sunday running Monday's lessons: at the camera's school, or at another one.
        s.add(CalendarDay(day=sunday, name="调休", level="school", runs_weekday=1,
                          place_id=world.rural_school if at_rural_school else 999))
    world.engine.add_maintenance_window("周末", [5, 6], "00:00", "00:00")
    camera(world, "device_removed")
    world.tick_after(31)
    world.tick_after(31)
    muted = by_rule(world, "camera_missing").suppressed_by or ""
    assert ("周末" in muted) is not at_rural_school
