"""The alert list's filters: county, school, severity and a free-text search over what a
person reads (summaries, device, school and classroom names).  They only narrow a query
the caller's scope has already narrowed, so a filter never widens what anyone sees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select, true

from fleet.db.models import Alert, Classroom, School

__all__ = ["alert_filters"]


def _rooms(*where: ColumnElement[bool]) -> Select[Any]:
    return select(Classroom.id).join(School, School.id == Classroom.school_id).where(*where)


def alert_filters(
    county_id: int | None = None,
    school_id: int | None = None,
    severity: Sequence[str] = (),
    text: str | None = None,
) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if county_id is not None:
        clauses.append(Alert.classroom_id.in_(_rooms(School.county_id == county_id)))
    if school_id is not None:
        clauses.append(Alert.classroom_id.in_(_rooms(School.id == school_id)))
    if severity:
        clauses.append(Alert.severity.in_(list(severity)))
    for word in (text or "").split():
        places = _rooms(or_(School.name.contains(word, autoescape=True),
                            Classroom.name.contains(word, autoescape=True)))
        clauses.append(or_(
            Alert.summary_zh.contains(word, autoescape=True),
            Alert.summary_en.icontains(word, autoescape=True),
            Alert.device_id.icontains(word, autoescape=True),
            Alert.classroom_id.in_(places),
        ))
    return and_(true(), *clauses)
