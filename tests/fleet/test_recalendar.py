"""A county's calendar published after its schools' schedules were imported takes effect
at once, on SQLite and on PostgreSQL: a 调休 Sunday gets Monday's lessons (and the check
scheduler checks them), removing it takes them away again, a lifted closure brings its
lessons back, and lessons changed by hand stay as they are."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from fleet.broker import Mosquitto
from fleet.checks.readiness import lesson_readiness
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import CalendarDay, County, Lesson, ScheduleRow, School
from fleet.timetable.calendar import Day
from fleet.timetable.edits import move_lesson
from fleet.timetable.importer import Recalendared, recalendar
from tests.fleet.test_schedules import (  # noqa: F401  (fixtures)
    DT_MON,
    SHANGHAI,
    _checked,
    _scheduler,
    csv,
    lessons_of,
    local,
    pilot_db,
    run,
    url,
)

DT_MON_10 = DT_MON.replace("08:00,08:40,数学", "10:00,10:40,语文")
SUNDAY = date(2026, 9, 27)


def _publish(sessions: SessionFactory, **day: object) -> tuple[int, Recalendared]:
    """What POST /holidays does for a day (of 洞头区 unless the place is given); the route
    also cancels the lessons a closure covers at their main classroom."""
    with session_scope(sessions) as s:
        if "level" not in day:
            county = s.scalars(select(County.id).where(County.name == "洞头区")).one()
            day |= {"level": "county", "place_id": county}
        row = CalendarDay(**day)
        s.add(row)
        s.flush()
        return row.id, recalendar(s, [Day.of(row)])


def _remove(sessions: SessionFactory, day_id: int) -> Recalendared:
    """What DELETE /holidays/{id} does."""
    with session_scope(sessions) as s:
        row = s.get_one(CalendarDay, day_id)
        removed = Day.of(row)
        s.delete(row)
        s.flush()
        return recalendar(s, [removed])


def _days(sessions: SessionFactory) -> list[datetime]:
    with session_scope(sessions) as s:
        return [local(x) for x in lessons_of(s, "洞头区实验小学")]


def test_a_calendar_published_after_the_import_takes_effect_at_once(
        pilot_db: SessionFactory, broker: Mosquitto, tmp_path: Path) -> None:  # noqa: F811
    run(pilot_db, csv(DT_MON, DT_MON_10))
    with session_scope(pilot_db) as s:
        assert len(s.scalars(select(ScheduleRow)).all()) == 2
    mondays = [datetime(2026, 9, d, h, tzinfo=SHANGHAI) for d in (7, 14, 21, 28)
               for h in (8, 10)]
    assert _days(pilot_db) == mondays
    # A day changed by hand before the calendar arrives: Monday 21st's 10:00 is cancelled.
    with session_scope(pilot_db) as s:
        (by_hand,) = [x for x in lessons_of(s, "洞头区实验小学")
                      if local(x) == datetime(2026, 9, 21, 10, tzinfo=SHANGHAI)]
        by_hand.cancelled, by_hand.edit = True, "cancelled"

    workday, done = _publish(pilot_db, day=SUNDAY, name="国庆调休", runs_weekday=1)
    assert done == Recalendared(added=2)
    sunday = [datetime(2026, 9, 27, h, tzinfo=SHANGHAI) for h in (8, 10)]
    assert [d for d in _days(pilot_db) if d.date() == SUNDAY] == sunday
    with session_scope(pilot_db) as s:
        first, second = [x for x in lessons_of(s, "洞头区实验小学") if local(x).date() == SUNDAY]
        assert (first.subject, second.subject) == ("数学", "语文")
        first_id = first.id
        # The 10:00 is moved by hand to 14:00 on the Sunday.
        later = datetime(2026, 9, 27, 14, tzinfo=SHANGHAI)
        moved_id = move_lesson(s, second, later, later + timedelta(minutes=40),
                               second.main_classroom).id
    now = [sunday[0] - timedelta(minutes=24)]
    scheduler, publisher = _scheduler(pilot_db, broker, tmp_path, now)
    try:
        assert scheduler.tick() == 2  # the Sunday's Monday lesson, main and receiver
        assert _checked(pilot_db, first_id) == {"dongtou-shiyan-sync1", "dongtou-luxi-sync1"}
    finally:
        publisher.close()

    # Published again unchanged: nothing moves (the moved lesson is a kept conflict).
    assert recalendar_again(pilot_db) == Recalendared(conflicts=1)

    # The county removes its 调休: the Sunday's lesson goes (cancelled: it was checked),
    # the one moved by hand stays where it was put.
    assert _remove(pilot_db, workday) == Recalendared(removed=1, conflicts=1)
    with session_scope(pilot_db) as s:
        gone = s.get_one(Lesson, first_id)
        assert gone.cancelled
        kept = s.get_one(Lesson, moved_id)
        assert (kept.cancelled, kept.edit, local(kept)) == (False, "moved", later)

    # A closure on Monday 14th takes its lessons away; lifting it brings them back; the
    # lesson cancelled by hand on the 21st stays cancelled throughout.
    closure, done = _publish(pilot_db, day=date(2026, 9, 14), name="停课")
    assert done == Recalendared(removed=2)
    assert not [d for d in _days(pilot_db) if d.day == 14]
    assert _remove(pilot_db, closure) == Recalendared(added=2)
    assert [d for d in _days(pilot_db) if d.day == 14] == \
        [datetime(2026, 9, 14, h, tzinfo=SHANGHAI) for h in (8, 10)]
    assert [d for d in _days(pilot_db) if d.day == 21] == \
        [datetime(2026, 9, 21, 8, tzinfo=SHANGHAI)]


def recalendar_again(sessions: SessionFactory) -> Recalendared:
    with session_scope(sessions) as s:
        (row,) = s.scalars(select(CalendarDay).where(CalendarDay.day == SUNDAY)).all()
        return recalendar(s, [Day.of(row)])


YQ_MON = ("weekly,1,,08:00,08:40,英语,四年级,郑老师,乐清市城南实验小学,同步课堂教室,"
          "乐清市大荆镇山头小学;乐清市龙西乡小学,live,")


def _receivers(sessions: SessionFactory, day: int) -> list[str]:
    with session_scope(sessions) as s:
        (lesson,) = [x for x in lessons_of(s, "乐清市城南实验小学") if local(x).day == day]
        return sorted(r.classroom.school.name for r in lesson.receivers)


def test_a_closed_receiving_school_leaves_the_lesson_for_the_others(
        pilot_db: SessionFactory, broker: Mosquitto, tmp_path: Path) -> None:  # noqa: F811
    with session_scope(pilot_db) as s:
        longxi = s.scalars(select(School.id).where(School.name == "乐清市龙西乡小学")).one()
    # Closed before the import (the 21st) and after it (the 14th).
    _publish(pilot_db, day=date(2026, 9, 21), name="停课", level="school", place_id=longxi)
    run(pilot_db, csv(YQ_MON))
    both = ["乐清市大荆镇山头小学", "乐清市龙西乡小学"]
    assert _receivers(pilot_db, 7) == both
    assert _receivers(pilot_db, 21) == ["乐清市大荆镇山头小学"]
    closure, done = _publish(pilot_db, day=date(2026, 9, 14), name="停课", level="school",
                             place_id=longxi)
    assert done == Recalendared(changed=1)
    assert _receivers(pilot_db, 14) == ["乐清市大荆镇山头小学"]
    now = [datetime(2026, 9, 14, 8, tzinfo=SHANGHAI) - timedelta(minutes=24)]
    scheduler, publisher = _scheduler(pilot_db, broker, tmp_path, now)
    try:
        assert scheduler.tick() == 2
        with session_scope(pilot_db) as s:
            (lesson,) = [x for x in lessons_of(s, "乐清市城南实验小学") if local(x).day == 14]
            lesson_id = lesson.id
            ready = lesson_readiness(s, lesson, now[0])
            assert sorted(e.school for e in ready.ends) == ["乐清市城南实验小学",
                                                            "乐清市大荆镇山头小学"]
        assert _checked(pilot_db, lesson_id) == {"yueqing-chengnan-sync1",
                                                 "yueqing-shantou-sync1"}
    finally:
        publisher.close()
    # Lifted: 龙西 is back in the lesson (the same lesson, its checks kept).
    assert _remove(pilot_db, closure) == Recalendared(changed=1)
    assert _receivers(pilot_db, 14) == both
    with session_scope(pilot_db) as s:
        assert [x.id for x in lessons_of(s, "乐清市城南实验小学") if local(x).day == 14] == \
            [lesson_id]
