"""School calendars (holidays, closures, 调休) scoped to places, and semesters.

A county technician publishes the county's calendar once and every school in it follows;
a closure cancels the lessons it covers at once (checks stop, alerts there are muted).
The schedules already imported follow at once (``recalendar``): a make-up workday gets
the named weekday's lessons, a removed closure brings its lessons back, and lessons
changed by hand stay as they are.  Ending a semester cancels its lessons
after the last day and leaves the ones before it (and its reports) as they were.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep
from fleet.api.routes.common import DateFrom, IdPath, Text, invalid, require_writer
from fleet.api.scope import Scope, not_found
from fleet.db.models import CalendarDay, Classroom, Lesson, Role, Schedule, Term
from fleet.timetable.calendar import Calendar, Day, Level, place_of
from fleet.timetable.importer import recalendar

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["calendar"])


class CalendarDayIn(BaseModel):
    day: date
    name: str = Text(64, default="")
    level: Level = Level.PROVINCE
    place_id: int = Field(0, ge=0)
    # 1-7: a make-up workday (调休) running that weekday's lessons; absent: closed.
    runs_weekday: int | None = Field(None, ge=1, le=7)


class CalendarDayOut(CalendarDayIn):
    model_config = ConfigDict(from_attributes=True)
    id: int


class PublishIn(BaseModel):
    days: list[CalendarDayIn] = Field(min_length=1, max_length=400)


class PublishOut(BaseModel):
    days: list[CalendarDayOut]
    lessons_cancelled: int
    # Imported schedules re-laid on these days: lessons added (调休) or brought back.
    lessons_added: int = 0
    lessons_restored: int = 0


class SemesterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    start: date
    end: date
    ended_at: datetime | None


class EndIn(BaseModel):
    last_day: date


class EndOut(BaseModel):
    semester: SemesterOut
    lessons_cancelled: int


_NOT_YOURS = "该日历不在你负责的范围内 / that calendar is outside the places you look after"


def _may_publish(session: Session, scope: Scope, level: Level, place_id: int) -> bool:
    if scope.is_admin:
        return True
    if level is Level.PROVINCE:
        return False
    if level is Level.COUNTY:
        return scope.principal.role is Role.COUNTY_TECH and scope.principal.county_id == place_id
    ids = scope.school_ids() if level is Level.SCHOOL else scope.classroom_ids()
    return place_id in set(session.scalars(ids))


def _local_bounds(day: date, last: date | None = None) -> tuple[datetime, datetime]:
    """UTC instants around local dates, a day wider each way for any school's zone."""
    lo = datetime.combine(day - timedelta(days=1), time(), UTC)
    hi = datetime.combine((last or day) + timedelta(days=2), time(), UTC)
    return lo, hi


def _cancel_closed(session: Session, days: list[Day]) -> int:
    """Cancel the lessons whose main classroom a closure among ``days`` covers."""
    closures = [d for d in days if d.closed]
    if not closures:
        return 0
    calendar = Calendar(closures)
    lo, _ = _local_bounds(min(d.day for d in closures))
    _, hi = _local_bounds(max(d.day for d in closures))
    cancelled = 0
    for lesson in session.scalars(
        select(Lesson).where(Lesson.cancelled.is_(False), Lesson.starts_at >= lo,
                             Lesson.starts_at < hi)
        .options(selectinload(Lesson.main_classroom).selectinload(Classroom.school))
    ):
        room = lesson.main_classroom
        local = lesson.starts_at.astimezone(ZoneInfo(room.school.timezone)).date()
        if calendar.closure(local, place_of(room)) is not None:
            lesson.cancelled = True
            cancelled += 1
    return cancelled


@router.get("/holidays")
def list_days(
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    date_from: DateFrom = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="inclusive; default: no end")
    ] = None,
) -> list[CalendarDayOut]:
    """The school calendar of the places you look after (and the province's): closed
    days (no lessons; alerts there held back) and make-up workdays (``runs_weekday``)."""
    zone = ZoneInfo(services.config.timezone)
    first = date_from or services.clock().astimezone(zone).date()
    query = select(CalendarDay).where(CalendarDay.day >= first, scope.calendar_day())
    if date_to is not None:
        if date_to < first:
            raise invalid("结束日期早于开始日期 / 'to' is before 'from'", "query", "to")
        query = query.where(CalendarDay.day <= date_to)
    query = query.order_by(CalendarDay.day, CalendarDay.level, CalendarDay.place_id)
    return [CalendarDayOut.model_validate(d) for d in session.scalars(query)]


@router.post("/holidays", responses={403: {"description": "a place you do not look after"}})
def publish_days(body: PublishIn, session: DB, scope: CurrentScope) -> PublishOut:
    """Publish calendar days (a county's once for all its schools); a day already set for
    that place is replaced.  Closures cancel the lessons they cover."""
    require_writer(scope)
    for entry in body.days:
        if entry.level is Level.PROVINCE and entry.place_id:
            raise invalid("全省日历的 place_id 应为 0 / a province-wide day has place_id 0",
                          "body", "days")
        if not _may_publish(session, scope, entry.level, entry.place_id):
            raise HTTPException(403, _NOT_YOURS)
    rows: list[CalendarDay] = []
    for entry in body.days:
        row = session.scalars(select(CalendarDay).where(
            CalendarDay.day == entry.day, CalendarDay.level == entry.level.value,
            CalendarDay.place_id == entry.place_id)).first()
        if row is None:
            row = CalendarDay(day=entry.day, level=entry.level.value, place_id=entry.place_id)
            session.add(row)
        row.name, row.runs_weekday = entry.name, entry.runs_weekday
        rows.append(row)
    session.flush()
    days = [Day.of(row) for row in rows]
    cancelled = _cancel_closed(session, days)
    done = recalendar(session, days)
    return PublishOut(days=[CalendarDayOut.model_validate(r) for r in rows],
                      lessons_cancelled=cancelled + done.removed, lessons_added=done.added,
                      lessons_restored=done.changed)


@router.delete("/holidays/{day_id}", status_code=204)
def delete_day(day_id: IdPath, session: DB, scope: CurrentScope) -> None:
    """Remove a calendar day: the imported schedules' lessons it cancelled come back, and a
    make-up workday's lessons go (lessons changed by hand stay)."""
    require_writer(scope)
    row = scope.get(session, CalendarDay, day_id, "calendar day")
    if not _may_publish(session, scope, Level(row.level), row.place_id):
        raise HTTPException(403, _NOT_YOURS)
    removed = Day.of(row)
    session.delete(row)
    session.flush()
    recalendar(session, [removed])


@router.get("/semesters")
def list_semesters(session: DB, scope: CurrentScope) -> list[SemesterOut]:
    return [SemesterOut.model_validate(t)
            for t in session.scalars(select(Term).order_by(Term.start, Term.id))]


@router.post("/semesters/{semester_id}/end")
def end_semester(semester_id: IdPath, body: EndIn, session: DB, scope: CurrentScope,
                 services: ServicesDep) -> EndOut:
    """End a semester on ``last_day``: its lessons after it are cancelled; the ones
    before, with their checks and alerts, stay for its reports."""
    if not scope.is_admin:
        raise HTTPException(403, "仅管理员可结束学期 / only an admin ends a semester")
    term = session.get(Term, semester_id)
    if term is None:
        raise not_found("semester")
    if body.last_day < term.start:
        raise invalid("学期结束早于开始 / the semester ends before it starts", "body",
                      "last_day")
    term.end = min(term.end, body.last_day)
    term.ended_at = services.clock()
    lo, _ = _local_bounds(term.end)
    schedules = select(Schedule.id).where(Schedule.semester_id == term.id)
    cancelled = 0
    for lesson in session.scalars(
        select(Lesson).where(Lesson.schedule_id.in_(schedules), Lesson.cancelled.is_(False),
                             Lesson.starts_at >= lo)
        .options(selectinload(Lesson.main_classroom).selectinload(Classroom.school))
    ):
        zone = ZoneInfo(lesson.main_classroom.school.timezone)
        if lesson.starts_at.astimezone(zone).date() > term.end:
            lesson.cancelled = True
            cancelled += 1
    session.flush()
    return EndOut(semester=SemesterOut.model_validate(term), lessons_cancelled=cancelled)

