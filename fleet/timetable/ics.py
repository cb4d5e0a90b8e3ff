"""iCalendar feeds of the timetable, so technicians can subscribe on their phones.

One feed per classroom (its lessons, main or receiving) and one per person (the
classrooms of the schools they look after; a county technician gets the county's
schools).  Event UIDs are the lesson ids, which re-imports keep, so a subscribed
calendar updates in place; a cancelled lesson stays in the feed as CANCELLED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from fleet.db.base import utcnow
from fleet.db.models import (
    Classroom,
    Lesson,
    LessonMode,
    LessonReceiver,
    Person,
    PersonSchool,
    Role,
    School,
)

__all__ = ["CHECK_REMINDER", "UID_DOMAIN", "classroom_calendar", "person_calendar"]

UID_DOMAIN = "syncclass"
# 温教办基〔2018〕69号: the technician is in place early and checks the equipment.
CHECK_REMINDER = timedelta(minutes=30)
_MODE = {LessonMode.LIVE: ("直播", "live"), LessonMode.RECORDED: ("录播", "recorded")}

Clock = Callable[[], datetime]


def _room_label(room: Classroom) -> str:
    return f"{room.school.name} {room.name}"


def _event(lesson: Lesson, stamp: datetime) -> Event:
    tz = ZoneInfo(lesson.main_classroom.school.timezone)
    zh_mode, en_mode = _MODE[lesson.mode]
    what = f"{lesson.grade}{lesson.subject}"
    receivers = "、".join(_room_label(r.classroom) for r in lesson.receivers)
    event = Event()
    event.add("uid", f"lesson-{lesson.id}@{UID_DOMAIN}")
    event.add("dtstamp", stamp)
    event.add("dtstart", lesson.starts_at.astimezone(tz))
    event.add("dtend", lesson.ends_at.astimezone(tz))
    event.add("summary", f"同步课堂 {what}（{zh_mode}）/ Synchronous lesson: {what} ({en_mode})")
    event.add("location", _room_label(lesson.main_classroom))
    event.add("description", "\n".join([
        f"主讲 Main: {_room_label(lesson.main_classroom)}",
        f"接收 Receiving: {receivers}",
        f"教师 Teacher: {lesson.teacher or '-'}",
        "课前请提前到位调试设备 / Be there early and check the equipment before the lesson.",
    ]))
    event.add("status", "CANCELLED" if lesson.cancelled else "CONFIRMED")
    if not lesson.cancelled:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", -CHECK_REMINDER)
        alarm.add("description", f"同步课堂设备检查 / equipment check: {what}")
        event.add_component(alarm)
    return event


def _calendar(name: str, lessons: Iterable[Lesson], clock: Clock) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//syncclass//timetable//ZH")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", "Asia/Shanghai")
    stamp = clock()
    for lesson in lessons:
        cal.add_component(_event(lesson, stamp))
    cal.add_missing_timezones()
    data: bytes = cal.to_ical()
    return data


def _lessons_in(session: Session, room_ids: set[int]) -> list[Lesson]:
    if not room_ids:
        return []
    received = select(LessonReceiver.lesson_id).where(LessonReceiver.classroom_id.in_(room_ids))
    return list(session.scalars(
        select(Lesson)
        .where(or_(Lesson.main_classroom_id.in_(room_ids), Lesson.id.in_(received)))
        .order_by(Lesson.starts_at, Lesson.id)
    ))


def classroom_calendar(session: Session, classroom_id: int, *, clock: Clock = utcnow) -> bytes:
    """The lessons of one classroom; LookupError for an unknown classroom."""
    room = session.get(Classroom, classroom_id)
    if room is None:
        raise LookupError(f"unknown classroom {classroom_id}")
    return _calendar(f"同步课堂 · {_room_label(room)}", _lessons_in(session, {room.id}), clock)


def person_calendar(session: Session, person_id: int, *, clock: Clock = utcnow) -> bytes:
    """The lessons of the classrooms a person looks after; LookupError for an unknown one."""
    person = session.get(Person, person_id)
    if person is None:
        raise LookupError(f"unknown person {person_id}")
    school_ids = select(PersonSchool.school_id).where(PersonSchool.person_id == person.id)
    where: ColumnElement[bool] = Classroom.school_id.in_(school_ids)
    if person.role == Role.COUNTY_TECH and person.county_id is not None:
        county_schools = select(School.id).where(School.county_id == person.county_id)
        where = or_(where, Classroom.school_id.in_(county_schools))
    rooms = set(session.scalars(select(Classroom.id).where(where)))
    return _calendar(f"同步课堂 · {person.name}", _lessons_in(session, rooms), clock)
