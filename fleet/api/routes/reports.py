"""Reports per classroom, school, pair (捆绑考核) and county; JSON or CSV for Excel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import Select, select

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep
from fleet.api.routes.common import DateFrom, DateTo, RefId, day_range
from fleet.api.scope import Scope, not_found
from fleet.db.models import Classroom, County, Pair, School, Term
from fleet.reports import Level, ReportRow, build_report, report_csv

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/reports", tags=["reports"])


def _visible(session: DB, scope: Scope, level: Level) -> set[int]:
    query: Select[int] = {
        Level.CLASSROOM: select(Classroom.id).where(scope.classroom()),
        Level.SCHOOL: select(School.id).where(scope.school()),
        Level.PAIR: select(Pair.id).where(scope.pair()),
        Level.COUNTY: select(County.id).where(scope.county()),
    }[level]
    return set(session.scalars(query))


@router.get(
    "/{level}",
    response_model=list[ReportRow],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON rows, or CSV"}},
)
def report(
    level: Level,
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    # The bounds go on the items: FastAPI would apply a list's ge/le to the list itself.
    unit_id: Annotated[list[RefId] | None, Query(alias="id", max_length=1000)] = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    semester_id: Annotated[RefId | None, Query(alias="semester")] = None,
) -> Any:
    """Lessons, readiness at start, alerts, MTTA/MTTR and availability per unit.

    Dates are local (Asia/Shanghai unless configured); ``id`` restricts to some units.
    A technician's rows count only the classrooms they look after, at every level.
    ``semester`` counts only that semester's lessons (its dates unless given).
    """
    now = services.clock()
    if semester_id is not None:
        term = session.get(Term, semester_id)
        if term is None:
            raise not_found("semester")
        date_from, date_to = date_from or term.start, date_to or term.end
    first, last, _, _ = day_range(services.config.timezone, now, date_from, date_to)
    ids = _visible(session, scope, level)
    if unit_id:
        ids &= set(unit_id)
    rows = build_report(
        session,
        level,
        first,
        last,
        now=now,
        unit_ids=ids,
        classroom_ids=None if scope.is_admin else set(session.scalars(scope.classroom_ids())),
        tz=services.config.timezone,
        semester_id=semester_id,
    )
    if fmt == "csv":
        name = f"syncclass-{level.value}-{first}-{last}.csv"
        return Response(
            report_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return rows
