"""Where an alert lives and what it endangers: the device's place and the lesson ahead.

A technician reading "摄像头未连接" needs to know which classroom, and whether a
synchronous lesson is about to depend on it: the lesson in progress, or the next one
starting within the horizon, with the schools at the other end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from fleet.db.models import Classroom, Lesson, LessonMode, LessonReceiver, School
from fleet.inventory import DeviceContext, checked_classrooms

__all__ = [
    "LessonContext",
    "affecting_lessons",
    "device_labels",
    "lesson_context",
    "lessons_in_progress",
]


def device_labels(device_id: str, place: DeviceContext | None) -> dict[str, str]:
    """The labels silences and maintenance windows match on (all strings)."""
    if place is None:
        return {"device_id": device_id}
    return {
        "device_id": device_id,
        "classroom_id": str(place.classroom_id),
        "school_id": str(place.school_id),
        "county_id": str(place.county_id),
        "timezone": place.timezone,
    }


def affecting_lessons(
    session: Session, classroom_id: int, start: datetime, end: datetime
) -> list[Lesson]:
    """Lessons overlapping [start, end] that need this classroom.

    A recorded lesson (录播) does not need its main classroom: only the receivers play it.
    """
    receiving = select(LessonReceiver.lesson_id).where(LessonReceiver.classroom_id == classroom_id)
    query = (
        select(Lesson)
        .where(
            Lesson.cancelled.is_(False),
            Lesson.starts_at <= end,
            Lesson.ends_at > start,
            or_(
                (Lesson.main_classroom_id == classroom_id) & (Lesson.mode == LessonMode.LIVE),
                Lesson.id.in_(receiving),
            ),
        )
        .options(selectinload(Lesson.receivers))
        .order_by(Lesson.starts_at)
    )
    return list(session.scalars(query))


def lessons_in_progress(session: Session, now: datetime) -> dict[int, list[Lesson]]:
    """Classroom id -> the lessons under way there now that need it (one query per tick)."""
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.cancelled.is_(False), Lesson.starts_at <= now, Lesson.ends_at > now)
        .options(selectinload(Lesson.receivers))
    )
    rooms: dict[int, list[Lesson]] = {}
    for lesson in lessons:
        for room in checked_classrooms(lesson):
            rooms.setdefault(room.id, []).append(lesson)
    return rooms


@dataclass(frozen=True)
class LessonContext:
    lesson_id: int
    grade: str
    subject: str
    starts_at: datetime
    local_start: str  # "10:00" in the school's time zone
    partners: tuple[str, ...]  # the schools at the other end(s)
    in_progress: bool


def _partners(session: Session, lesson: Lesson, classroom_id: int) -> tuple[str, ...]:
    rooms = {lesson.main_classroom_id} | {r.classroom_id for r in lesson.receivers}
    rooms.discard(classroom_id)
    if not rooms:
        return ()
    names = session.scalars(
        select(School.name)
        .join(Classroom, Classroom.school_id == School.id)
        .where(Classroom.id.in_(rooms))
        .order_by(School.name)
    )
    return tuple(dict.fromkeys(names))


def lesson_context(
    session: Session, classroom_id: int, now: datetime, horizon: timedelta, tz: str
) -> LessonContext | None:
    """The lesson in progress in the classroom, else the next one within ``horizon``."""
    lessons = affecting_lessons(session, classroom_id, now, now + horizon)
    if not lessons:
        return None
    lesson = lessons[0]
    return LessonContext(
        lesson_id=lesson.id,
        grade=lesson.grade,
        subject=lesson.subject,
        starts_at=lesson.starts_at,
        local_start=lesson.starts_at.astimezone(ZoneInfo(tz)).strftime("%H:%M"),
        partners=_partners(session, lesson, classroom_id),
        in_progress=lesson.starts_at <= now,
    )
