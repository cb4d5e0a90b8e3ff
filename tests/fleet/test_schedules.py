"""Schedules per school and semester, place-scoped calendars with 调休, and changes made
on the day, on SQLite and on PostgreSQL: what the issue asks the timetable to show."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.contract import Kind
from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from fleet.checks.scheduler import CheckScheduler
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert, CalendarDay, CheckRun, Classroom, County, Lesson, School
from fleet.ingest import MqttIngest
from fleet.timetable import ImportResult, Semester, import_timetable
from fleet.timetable.calendar import Place, closure_for, lessons_on
from fleet.timetable.edits import move_lesson
from tests.fleet.alert_helpers import build_world
from tests.fleet.checks_helpers import fleet_ingest
from tests.fleet.db import fresh_db
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEM = Semester(date(2026, 9, 1), date(2026, 9, 30), name="2026学年第一学期")
HEAD = ("kind,weekday,date,start,end,subject,grade,teacher,main_school,main_classroom,receivers,"
        "mode,note")
DT_MON = ("weekly,1,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,同步课堂教室,"
          "洞头区鹿西乡小学,live,")
LUXI_WED = ("weekly,3,,09:00,09:40,科学,三年级,周老师,洞头区鹿西乡小学,,"
            "洞头区实验小学/同步课堂教室,live,")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return fresh_database(request.getfixturevalue("postgres"), f"tt_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pilot_db(url: str, tmp_path: Path) -> Iterator[SessionFactory]:
    """The demo pilot's inventory on SQLite or PostgreSQL."""
    sessions = fresh_db(tmp_path, url)
    load_pilot(sessions)
    yield sessions
    sessions.kw["bind"].dispose()


def csv(*rows: str) -> bytes:
    return ("\n".join([HEAD, *rows]) + "\n").encode()


def run(factory: SessionFactory, data: bytes, name: str = "课表.csv", *,
        dry_run: bool = False, semester: Semester = SEM) -> ImportResult:
    with session_scope(factory) as s:
        return import_timetable(s, data, name, semester=semester, dry_run=dry_run)


def lessons_of(s: Session, school: str) -> list[Lesson]:
    return list(s.scalars(
        select(Lesson).join(Classroom, Lesson.main_classroom_id == Classroom.id).join(School)
        .where(School.name == school, Lesson.cancelled.is_(False)).order_by(Lesson.starts_at)))


def local(lesson: Lesson) -> datetime:
    return lesson.starts_at.astimezone(SHANGHAI)


def test_two_schools_files_of_the_same_name_keep_each_others_lessons(
        pilot_db: SessionFactory) -> None:
    dongtou = run(pilot_db, csv(DT_MON))
    luxi = run(pilot_db, csv(LUXI_WED))  # the same file name, another school
    assert (dongtou.schedule, dongtou.created) == ("洞头区实验小学", 4)  # Mondays 7-28
    assert (luxi.schedule, luxi.created, luxi.removed) == ("洞头区鹿西乡小学", 5, 0)
    # Dongtou changes its teacher: only its own lessons change, Luxi's Wednesdays stay.
    again = run(pilot_db, csv(DT_MON.replace("林晓红", "叶青")))
    assert (again.updated, again.removed) == (4, 0)
    assert [(c.change, c.day.day, c.detail) for c in again.changes] == [
        ("changed", d, "教师由 林晓红 改为 叶青 / teacher changed: 林晓红 -> 叶青")
        for d in (7, 14, 21, 28)]
    # The same lessons under a new file name are the same schedule: nothing changes.
    renamed = run(pilot_db, csv(LUXI_WED), "鹿西乡小学秋季课表.csv")
    assert (renamed.created, renamed.unchanged, renamed.removed) == (0, 5, 0)
    with session_scope(pilot_db) as s:
        assert {x.teacher for x in lessons_of(s, "洞头区实验小学")} == {"叶青"}
        assert len(lessons_of(s, "洞头区鹿西乡小学")) == 5
        assert [local(x).day for x in lessons_of(s, "洞头区鹿西乡小学")] == [2, 9, 16, 23, 30]


def test_a_school_closure_skips_only_that_schools_lessons(pilot_db: SessionFactory) -> None:
    with session_scope(pilot_db) as s:
        luxi = s.scalars(select(School.id).where(School.name == "洞头区鹿西乡小学")).one()
        s.add(CalendarDay(day=date(2026, 9, 16), name="停课", level="school", place_id=luxi))
    run(pilot_db, csv(DT_MON))
    assert run(pilot_db, csv(LUXI_WED)).lessons == 4  # the 16th is closed at Luxi
    with session_scope(pilot_db) as s:
        assert date(2026, 9, 16) not in {local(x).date() for x in lessons_of(s, "洞头区鹿西乡小学")}
        dongtou_room = lessons_of(s, "洞头区实验小学")[0].main_classroom
        place = Place(dongtou_room.id, dongtou_room.school_id, dongtou_room.school.county_id)
        assert closure_for(s, place, date(2026, 9, 16)) is None
        assert closure_for(s, Place(None, luxi, None), date(2026, 9, 16)) == "停课"


def test_a_school_closure_mutes_only_that_school(url: str, tmp_path: Path) -> None:
    world = build_world(tmp_path, url=url)
    today = world.clock().astimezone(SHANGHAI).date()
    with session_scope(world.sessions) as s:
        town = s.scalars(select(Classroom.school_id).where(Classroom.id == world.town_room)).one()
        s.add(CalendarDay(day=today, name="洞头实验停课", level="school", place_id=town))
    for device in ("rural-1", "town-1"):
        world.send(Kind.EVENT, device, type="device_removed", entity="camera:cam0")
    world.tick_after(31)
    world.tick_after(31)
    with session_scope(world.sessions) as s:
        alerts = {a.device_id: (a.id, a.suppressed_by) for a in s.scalars(select(Alert).where(
            Alert.rule == "camera_missing"))}
    assert "洞头实验停课" in (alerts["town-1"][1] or "")
    assert alerts["rural-1"][1] is None  # the rural school of the same county is open
    notified = {n.alert_id for n in world.notifications("firing")}
    assert notified == {alerts["rural-1"][0]}


def _scheduler(sessions: SessionFactory, broker: Mosquitto, tmp_path: Path,
               now: list[datetime]) -> tuple[CheckScheduler, MqttIngest]:
    publisher = fleet_ingest(broker, sessions, [])
    actions = Actions(sessions, publisher, Signer.from_file(tmp_path / "fleet.key"),
                      clock=lambda: now[0])
    return CheckScheduler(sessions, actions, clock=lambda: now[0]), publisher


def _checked(sessions: SessionFactory, lesson_id: int) -> set[str]:
    with session_scope(sessions) as s:
        return set(s.scalars(select(CheckRun.device_id).where(CheckRun.lesson_id == lesson_id)))


def test_a_make_up_sunday_gets_mondays_lessons_and_their_checks(
        pilot_db: SessionFactory, broker: Mosquitto, tmp_path: Path) -> None:
    with session_scope(pilot_db) as s:
        county = s.scalars(select(County.id).where(County.name == "洞头区")).one()
        # The county publishes once: Sunday 27 September is taught as a Monday, and
        # Monday 28 September is a holiday (国庆调休), for all its schools.
        s.add_all([CalendarDay(day=date(2026, 9, 27), name="国庆调休", level="county",
                               place_id=county, runs_weekday=1),
                   CalendarDay(day=date(2026, 9, 28), name="国庆", level="county",
                               place_id=county)])
    result = run(pilot_db, csv(DT_MON))
    sunday = datetime(2026, 9, 27, 8, 0, tzinfo=SHANGHAI)
    assert result.lessons == 4  # 7, 14, 21 and Sunday 27; not the 28th
    with session_scope(pilot_db) as s:
        days = [local(x).date() for x in lessons_of(s, "洞头区实验小学")]
        assert days == [date(2026, 9, d) for d in (7, 14, 21, 27)]
        room = lessons_of(s, "洞头区实验小学")[0].main_classroom_id
        (on_sunday,) = lessons_on(s, room, date(2026, 9, 27))
        assert local(on_sunday) == sunday
        lesson_id = on_sunday.id
    now = [sunday - timedelta(minutes=24)]
    scheduler, publisher = _scheduler(pilot_db, broker, tmp_path, now)
    try:
        assert scheduler.tick() == 2
        assert _checked(pilot_db, lesson_id) == {"dongtou-shiyan-sync1", "dongtou-luxi-sync1"}
    finally:
        publisher.close()


def test_a_moved_lesson_is_checked_at_its_new_time_and_the_next_import_flags_it(
        pilot_db: SessionFactory, broker: Mosquitto, tmp_path: Path) -> None:
    run(pilot_db, csv(DT_MON))
    planned = datetime(2026, 9, 14, 8, 0, tzinfo=SHANGHAI)
    new_time = datetime(2026, 9, 14, 14, 0, tzinfo=SHANGHAI)
    with session_scope(pilot_db) as s:
        lesson = next(x for x in lessons_of(s, "洞头区实验小学") if local(x) == planned)
        moved = move_lesson(s, lesson, new_time, new_time + timedelta(minutes=40),
                            lesson.main_classroom)
        moved_id = moved.id
    now = [planned - timedelta(minutes=24)]
    scheduler, publisher = _scheduler(pilot_db, broker, tmp_path, now)
    try:
        assert scheduler.tick() == 0  # nothing at the old time
        now[0] = new_time - timedelta(minutes=24)
        assert scheduler.tick() == 2
        assert _checked(pilot_db, moved_id) == {"dongtou-shiyan-sync1", "dongtou-luxi-sync1"}
        # The 21st is moved after its first checks went out: the checked lesson stays
        # (cancelled, with its checks) and a new one is checked afresh at 15:00.
        checked_at = datetime(2026, 9, 21, 8, 0, tzinfo=SHANGHAI)
        now[0] = checked_at - timedelta(minutes=24)
        assert scheduler.tick() == 2
        with session_scope(pilot_db) as s:
            lesson = next(x for x in lessons_of(s, "洞头区实验小学") if local(x) == checked_at)
            old_id = lesson.id
            later = checked_at.replace(hour=15)
            second_id = move_lesson(s, lesson, later, later + timedelta(minutes=40),
                                    lesson.main_classroom).id
        assert second_id != old_id
        now[0] = later - timedelta(minutes=24)
        assert scheduler.tick() == 2
        assert _checked(pilot_db, second_id) == {"dongtou-shiyan-sync1", "dongtou-luxi-sync1"}
        with session_scope(pilot_db) as s:
            old = s.get(Lesson, old_id)
            assert old is not None and (old.cancelled, old.edit) == (True, "moved_away")
    finally:
        publisher.close()

    preview = run(pilot_db, csv(DT_MON), dry_run=True)
    assert (preview.created, preview.updated, preview.removed, preview.conflicts) == (0, 0, 0, 2)
    conflict, _ = preview.changes
    assert (conflict.change, conflict.day, conflict.starts, conflict.lesson_id) == (
        "conflict", date(2026, 9, 14), "14:00", moved_id)
    assert "08:00" in conflict.detail and "kept" in conflict.detail
    applied = run(pilot_db, csv(DT_MON))
    assert applied.conflicts == 2
    with session_scope(pilot_db) as s:
        kept = s.get(Lesson, moved_id)
        assert kept is not None and local(kept) == new_time and not kept.cancelled
        assert [local(x).hour for x in lessons_of(s, "洞头区实验小学")] == [8, 14, 15, 8]
