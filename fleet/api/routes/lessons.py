"""Lessons by date, each with its readiness (就绪 / 有风险 / 未就绪 / 检查中 / 待检查)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, Services, ServicesDep
from fleet.api.routes.common import DateFrom, DateTo, IdPath, RefQuery, day_range
from fleet.db.models import Classroom, Lesson, LessonMode, LessonReceiver

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/lessons", tags=["lessons"])

# Before any readiness source is wired (or for a lesson it does not know).
_PENDING: dict[str, Any] = {
    "state": "pending",
    "label_zh": "待检查",
    "label_en": "pending",
    "ends": [],
}


class ClassroomRef(BaseModel):
    id: int
    name: str
    school_id: int
    school: str


class ReadinessOut(BaseModel):
    """ready / warn / not_ready / checking / pending / unknown, and each end's check."""

    state: str
    label_zh: str
    label_en: str
    ends: list[dict[str, Any]]


class LessonOut(BaseModel):
    id: int
    subject: str
    grade: str
    teacher: str
    starts_at: datetime
    ends_at: datetime
    mode: LessonMode
    cancelled: bool
    main_classroom: ClassroomRef
    receivers: list[ClassroomRef]
    readiness: ReadinessOut
    # As of the fleet's clock (a browser's clock may be wrong): ended / in_progress /
    # next (no lesson the asker sees, of the same classroom filter, starts before it) /
    # later / cancelled.
    timing: str


def _soonest(session: Session, now: datetime, *where: ColumnElement[bool]) -> datetime | None:
    """When the next lesson among those ``where`` selects starts."""
    return session.scalar(
        select(func.min(Lesson.starts_at)).where(
            *where, Lesson.starts_at > now, Lesson.cancelled.is_(False)
        )
    )


def _timing(lesson: Lesson, now: datetime, soonest: datetime | None) -> str:
    if lesson.cancelled:
        return "cancelled"
    if lesson.ends_at <= now:
        return "ended"
    if lesson.starts_at <= now:
        return "in_progress"
    return "next" if lesson.starts_at == soonest else "later"


def _room(room: Classroom) -> ClassroomRef:
    return ClassroomRef(
        id=room.id, name=room.name, school_id=room.school_id, school=room.school.name
    )


def lesson_views(
    session: Session, services: Services, lessons: list[Lesson], *where: ColumnElement[bool]
) -> list[LessonOut]:
    """``where``: which lessons count when telling the next one."""
    states: dict[int, dict[str, Any]] = {}
    now = services.clock()
    soonest = _soonest(session, now, *where)
    if services.readiness is not None and lessons:
        views = services.readiness(session, lessons, now)
        states = {lesson_id: view.to_json() for lesson_id, view in views.items()}
    return [
        LessonOut(
            id=lesson.id,
            subject=lesson.subject,
            grade=lesson.grade,
            teacher=lesson.teacher,
            starts_at=lesson.starts_at,
            ends_at=lesson.ends_at,
            mode=lesson.mode,
            cancelled=lesson.cancelled,
            main_classroom=_room(lesson.main_classroom),
            receivers=[_room(r.classroom) for r in lesson.receivers],
            readiness=ReadinessOut.model_validate(states.get(lesson.id, _PENDING)),
            timing=_timing(lesson, now, soonest),
        )
        for lesson in lessons
    ]


@router.get("")
def list_lessons(
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    classroom_id: RefQuery = None,
    include_cancelled: bool = False,
) -> list[LessonOut]:
    """Lessons starting on local dates ``from``..``to`` (default today), in time order."""
    _, _, lo, hi = day_range(services.config.timezone, services.clock(), date_from, date_to)
    query = (
        select(Lesson)
        .where(scope.lesson(), Lesson.starts_at >= lo, Lesson.starts_at < hi)
        .options(
            selectinload(Lesson.receivers)
            .selectinload(LessonReceiver.classroom)
            .selectinload(Classroom.school),
            selectinload(Lesson.main_classroom).selectinload(Classroom.school),
        )
        .order_by(Lesson.starts_at, Lesson.id)
    )
    if not include_cancelled:
        query = query.where(Lesson.cancelled.is_(False))
    where = [scope.lesson()]
    if classroom_id is not None:
        receiver = exists().where(
            LessonReceiver.lesson_id == Lesson.id, LessonReceiver.classroom_id == classroom_id
        )
        where.append(or_(Lesson.main_classroom_id == classroom_id, receiver))
        query = query.where(where[-1])
    return lesson_views(session, services, list(session.scalars(query)), *where)


@router.get("/{lesson_id}")
def get_lesson(
    lesson_id: IdPath, session: DB, scope: CurrentScope, services: ServicesDep
) -> LessonOut:
    lesson = scope.get(session, Lesson, lesson_id, "lesson")
    return lesson_views(session, services, [lesson], scope.lesson())[0]
