"""Changes on the day: cancel, move (time or room) or add one lesson, within your scope.

Each answer is the lesson as ``GET /lessons/{id}`` shows it, readiness included: the
check scheduler plans from lessons, so a moved lesson is checked at its new time.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep
from fleet.api.routes.common import IdPath, Text, invalid, require_writer
from fleet.api.routes.lessons import LessonOut, lesson_views
from fleet.api.scope import Scope
from fleet.db.models import Classroom, Lesson, LessonMode
from fleet.timetable.edits import EditError, NewLesson, add_lesson, cancel_lesson, move_lesson

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/lessons", tags=["lessons"])
_FOREIGN = "教室不在你负责的范围内 / a classroom outside the schools you look after"


class MoveIn(BaseModel):
    """Any of the new start, end and main classroom; what is left out stays."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    main_classroom_id: int | None = Field(None, ge=1)


class LessonIn(BaseModel):
    subject: str = Text(64, 1)
    grade: str = Text(32, default="")
    teacher: str = Text(64, default="")
    starts_at: datetime
    ends_at: datetime
    mode: LessonMode = LessonMode.LIVE
    main_classroom_id: int = Field(ge=1)
    receiver_ids: list[int] = Field(min_length=1, max_length=20)


def _rooms(session: Session, scope: Scope, ids: list[int]) -> list[Classroom]:
    """These classrooms, each in the caller's scope (403 otherwise, 404 if unknown)."""
    rooms = {r.id: r for r in session.scalars(select(Classroom).where(Classroom.id.in_(ids)))}
    missing = [i for i in ids if i not in rooms]
    if missing:
        raise invalid(f"未知教室 / unknown classroom {missing[0]}", "body")
    mine = set(session.scalars(scope.classroom_ids()))
    if not scope.is_admin and not set(ids) <= mine:
        raise HTTPException(403, _FOREIGN)
    return [rooms[i] for i in ids]


def _view(session: Session, services: ServicesDep, scope: Scope, lesson: Lesson) -> LessonOut:
    return lesson_views(session, services, [lesson], scope.lesson())[0]


def _refused(exc: EditError) -> HTTPException:
    return HTTPException(409, str(exc))


@router.post("", status_code=201, responses={409: {"description": "the classroom is busy"}})
def add(body: LessonIn, session: DB, scope: CurrentScope, services: ServicesDep) -> LessonOut:
    """Add one lesson (a make-up or swapped lesson) outside any import."""
    require_writer(scope)
    main, *receivers = _rooms(session, scope, [body.main_classroom_id, *body.receiver_ids])
    new = NewLesson(main, tuple(receivers), body.starts_at, body.ends_at, body.subject,
                    body.grade, body.teacher, body.mode)
    try:
        lesson = add_lesson(session, new)
    except EditError as exc:
        raise _refused(exc) from None
    return _view(session, services, scope, lesson)


@router.post("/{lesson_id}/cancel", responses={409: {"description": "already cancelled"}})
def cancel(lesson_id: IdPath, session: DB, scope: CurrentScope,
           services: ServicesDep) -> LessonOut:
    """Cancel one lesson: it is no longer checked; the next import keeps it cancelled."""
    require_writer(scope)
    lesson = scope.get(session, Lesson, lesson_id, "lesson")
    _rooms(session, scope, [lesson.main_classroom_id, *(r.classroom_id for r in lesson.receivers)])
    try:
        cancel_lesson(session, lesson)
    except EditError as exc:
        raise _refused(exc) from None
    return _view(session, services, scope, lesson)


@router.post("/{lesson_id}/move", responses={409: {"description": "the classroom is busy"}})
def move(lesson_id: IdPath, body: MoveIn, session: DB, scope: CurrentScope,
         services: ServicesDep) -> LessonOut:
    """Move one lesson to another time or main classroom; it is checked at the new time
    (and the answer is that lesson, which has a new id if checks had already run)."""
    require_writer(scope)
    lesson = scope.get(session, Lesson, lesson_id, "lesson")
    room_id = body.main_classroom_id or lesson.main_classroom_id
    (room,) = _rooms(session, scope, [room_id])
    starts_at = body.starts_at or lesson.starts_at
    ends_at = body.ends_at or (starts_at + (lesson.ends_at - lesson.starts_at)
                               if body.starts_at else lesson.ends_at)
    try:
        moved = move_lesson(session, lesson, starts_at, ends_at, room)
    except EditError as exc:
        raise _refused(exc) from None
    return _view(session, services, scope, moved)
