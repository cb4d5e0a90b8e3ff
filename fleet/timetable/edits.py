"""Changes made on the day: cancel, move (time or room) or add one lesson.

Each change is marked on the lesson (``Lesson.edit``) with where the schedule had put
it (``planned_at``, ``planned_classroom_id``), so the next import of the schedule keeps
it and shows the conflict instead of silently undoing it.

Checks and readiness follow at once because they are planned from lessons: a cancelled
lesson is no longer checked; a moved lesson whose checks have not started is moved in
place, and one already checked at the old time becomes a new lesson (the old one stays,
cancelled, with its checks and alerts), so the check scheduler, whose command ids are
per lesson, checks it afresh at the new time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from fleet.db.models import (
    Classroom,
    Lesson,
    LessonMode,
    LessonReceiver,
    Pair,
    PairMember,
    Schedule,
    Term,
)
from fleet.timetable import messages as msg
from fleet.timetable.importer import referenced

__all__ = ["EditError", "NewLesson", "add_lesson", "cancel_lesson", "move_lesson"]


class EditError(ValueError):
    """A change refused, with a 简体中文 / English reason; nothing was changed."""


@dataclass(frozen=True)
class NewLesson:
    main: Classroom
    receivers: tuple[Classroom, ...]
    starts_at: datetime
    ends_at: datetime
    subject: str
    grade: str = ""
    teacher: str = ""
    mode: LessonMode = LessonMode.LIVE


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise EditError(msg.NAIVE())
    if ends_at <= starts_at:
        raise EditError(msg.ENDS_FIRST())


def _check_free(session: Session, rooms: list[Classroom], starts_at: datetime,
                ends_at: datetime, ignore: int | None = None) -> None:
    for room in rooms:
        receiver = exists().where(LessonReceiver.lesson_id == Lesson.id,
                                  LessonReceiver.classroom_id == room.id)
        other = session.scalars(select(Lesson).where(
            Lesson.cancelled.is_(False), Lesson.starts_at < ends_at, Lesson.ends_at > starts_at,
            Lesson.id != (ignore or 0), or_(Lesson.main_classroom_id == room.id, receiver),
        ).order_by(Lesson.starts_at)).first()
        if other is not None:
            when = f"{other.starts_at.astimezone(ZoneInfo(room.school.timezone)):%Y-%m-%d %H:%M}"
            raise EditError(msg.LESSON_CLASH(room=f"{room.school.name}/{room.name}", when=when,
                                             lesson=other.id, subject=other.subject))


def cancel_lesson(session: Session, lesson: Lesson) -> Lesson:
    if lesson.cancelled:
        raise EditError(msg.ALREADY_CANCELLED())
    lesson.cancelled = True
    if lesson.edit != "added":
        lesson.edit = "cancelled"
    session.flush()
    return lesson


def move_lesson(session: Session, lesson: Lesson, starts_at: datetime, ends_at: datetime,
                room: Classroom) -> Lesson:
    """The lesson at its new time and room (a new lesson if checks already ran)."""
    if lesson.cancelled:
        raise EditError(msg.ALREADY_CANCELLED())
    _check_times(starts_at, ends_at)
    receivers = [r.classroom for r in lesson.receivers]
    if room.id in {r.id for r in receivers}:
        raise EditError(msg.MAIN_IS_RECEIVER())
    _check_free(session, [room, *receivers], starts_at, ends_at, ignore=lesson.id)
    planned_at = lesson.planned_at or lesson.starts_at
    planned_room = lesson.planned_classroom_id or lesson.main_classroom_id
    edit = "added" if lesson.edit == "added" else "moved"
    if referenced(session, [lesson.id]):
        moved = Lesson(subject=lesson.subject, grade=lesson.grade, teacher=lesson.teacher,
                       mode=lesson.mode, source=lesson.source, schedule_id=lesson.schedule_id,
                       receivers=[LessonReceiver(classroom_id=r.id) for r in receivers])
        session.add(moved)
        # The old lesson keeps its checks and alerts; no import matches it any more.
        lesson.cancelled, lesson.edit = True, "moved_away"
        lesson.planned_at = lesson.planned_classroom_id = None
    else:
        moved = lesson
    moved.starts_at, moved.ends_at, moved.main_classroom_id = starts_at, ends_at, room.id
    moved.main_classroom = room
    moved.edit = edit
    if edit == "moved":
        moved.planned_at, moved.planned_classroom_id = planned_at, planned_room
    session.flush()
    return moved


def _schedule_for(session: Session, room: Classroom, day: datetime) -> int | None:
    """The schedule of the room's school (or a pair holding it) whose semester covers
    the date, so an added lesson is reported with its semester."""
    local = day.astimezone(ZoneInfo(room.school.timezone)).date()
    member = select(PairMember.pair_id).where(PairMember.school_id == room.school_id)
    pairs = select(Pair.id).where(or_(Pair.town_school_id == room.school_id, Pair.id.in_(member)))
    return session.scalar(select(Schedule.id).join(Term).where(
        Term.start <= local, Term.end >= local,
        or_(Schedule.school_id == room.school_id, Schedule.pair_id.in_(pairs)),
    ).order_by(Schedule.school_id.is_(None), Schedule.id).limit(1))


def add_lesson(session: Session, new: NewLesson) -> Lesson:
    _check_times(new.starts_at, new.ends_at)
    if not new.receivers:
        raise EditError(msg.NO_RECEIVER())
    if new.main.id in {r.id for r in new.receivers}:
        raise EditError(msg.MAIN_IS_RECEIVER())
    _check_free(session, [new.main, *new.receivers], new.starts_at, new.ends_at)
    lesson = Lesson(subject=new.subject, grade=new.grade, teacher=new.teacher, mode=new.mode,
                    starts_at=new.starts_at, ends_at=new.ends_at, main_classroom_id=new.main.id,
                    source="manual", edit="added",
                    schedule_id=_schedule_for(session, new.main, new.starts_at),
                    receivers=[LessonReceiver(classroom_id=r.id) for r in new.receivers])
    session.add(lesson)
    session.flush()
    return lesson
