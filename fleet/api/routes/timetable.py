"""Timetable import (CSV / Excel, all or nothing) and iCalendar feeds to subscribe to."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from fleet.api.auth import CalendarScope, CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep
from fleet.api.routes.common import IdPath, invalid, require_writer
from fleet.api.scope import Scope
from fleet.db.models import Classroom, Lesson, LessonReceiver, Person
from fleet.timetable import (
    Semester,
    TimetableError,
    classroom_calendar,
    import_timetable,
    person_calendar,
    source_of,
)

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["timetable"])
_ICS = "text/calendar; charset=utf-8"


class ImportOut(BaseModel):
    source: str
    lessons: int
    created: int
    updated: int
    unchanged: int
    removed: int
    holidays: int


_FOREIGN = (
    "课表涉及你负责范围以外的教室 / the timetable uses classrooms outside the schools you "
    "look after"
)


def _parse_holidays(text: str) -> tuple[date, ...]:
    days: list[date] = []
    for part in text.replace("，", ",").split(","):
        if part.strip():
            try:
                days.append(date.fromisoformat(part.strip()))
            except ValueError:
                raise invalid(
                    f"节假日日期无效 / bad holiday date {part.strip()!r} (YYYY-MM-DD)",
                    "body",
                    "holidays",
                ) from None
    return tuple(days)


def _outside_scope(session: Session, scope: Scope, source: str) -> bool:
    """Whether lessons of ``source`` use a classroom the caller does not look after."""
    if scope.is_admin:
        return False
    mine = scope.classroom_ids()
    foreign_receiver = exists().where(
        LessonReceiver.lesson_id == Lesson.id, LessonReceiver.classroom_id.not_in(mine)
    )
    query = select(Lesson.id).where(
        Lesson.source == source,
        or_(Lesson.main_classroom_id.not_in(mine), foreign_receiver),
    )
    return session.execute(query).first() is not None


@router.post(
    "/timetable/import",
    response_model=ImportOut,
    responses={
        422: {"description": "refused, nothing applied: one detail item per bad row"},
        403: {"description": "the file names classrooms outside your scope"},
    },
)
def import_file(
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="课表 .csv or .xlsx")],
    semester_start: Annotated[date, Form()],
    semester_end: Annotated[date, Form()],
    holidays: Annotated[str, Form(max_length=4000, description="YYYY-MM-DD, comma separated")] = "",
    semester_name: Annotated[str, Form(max_length=64)] = "",
) -> Any:
    """Import a semester timetable; every bad row is reported and nothing is applied."""
    require_writer(scope)
    # A sync route: FastAPI runs it in the thread pool, so the import never blocks the loop.
    data = file.file.read(services.config.upload_max_bytes + 1)
    if len(data) > services.config.upload_max_bytes:
        raise HTTPException(413, "文件过大 / file too large")
    filename = file.filename or "upload.csv"
    semester = Semester(
        start=semester_start,
        end=semester_end,
        holidays=_parse_holidays(holidays),
        name=semester_name,
    )
    if _outside_scope(session, scope, source_of(filename)):
        raise HTTPException(403, _FOREIGN)
    try:
        result = import_timetable(session, data, filename, semester=semester)
    except TimetableError as exc:
        session.rollback()
        # FastAPI's validation-error shape (as documented), plus where in the file.
        detail = [
            {
                "loc": ["body", "file", e.sheet or "", e.line, e.column],
                "msg": e.reason,
                "type": "timetable_row",
                "line": e.line,
                "column": e.column,
                "sheet": e.sheet,
            }
            for e in exc.errors
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    session.flush()
    if _outside_scope(session, scope, result.source):
        session.rollback()
        raise HTTPException(403, _FOREIGN)
    return ImportOut(**asdict(result))


@router.get("/classrooms/{classroom_id}/calendar.ics", response_class=Response)
def classroom_ics(classroom_id: IdPath, session: DB, scope: CalendarScope) -> Response:
    room = scope.get(session, Classroom, classroom_id, "classroom")
    return Response(classroom_calendar(session, room.id), media_type=_ICS)


@router.get("/people/{person_id}/calendar.ics", response_class=Response)
def person_ics(person_id: IdPath, session: DB, scope: CalendarScope) -> Response:
    person = scope.get(session, Person, person_id, "person")
    return Response(person_calendar(session, person.id), media_type=_ICS)
