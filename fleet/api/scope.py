"""Who may see what: an admin everything, a county technician their county, a school
technician the schools they look after.

Every query goes through these filters, and an object outside the caller's scope is
answered with 404 exactly like a missing one, so ids of other counties leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException
from sqlalchemy import ColumnElement, Select, and_, exists, inspect, or_, select, true
from sqlalchemy.orm import Session

from fleet.db.models import (
    Alert,
    CalendarDay,
    Classroom,
    County,
    Device,
    Lesson,
    LessonReceiver,
    Pair,
    PairMember,
    Person,
    PersonSchool,
    Role,
    School,
)

__all__ = ["Principal", "Scope", "not_found"]

T = TypeVar("T")


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} 不存在 / not found")


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    name: str
    role: Role
    county_id: int | None
    school_ids: frozenset[int]


class Scope:
    """SQL predicates restricting each table to what ``principal`` looks after."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_admin(self) -> bool:
        return self.principal.role is Role.ADMIN

    def school_ids(self) -> Select[int]:
        p = self.principal
        if p.role is Role.ADMIN:
            return select(School.id)
        if p.role is Role.COUNTY_TECH:
            return select(School.id).where(School.county_id == (p.county_id or -1))
        return select(School.id).where(School.id.in_(p.school_ids))

    def classroom_ids(self) -> Select[int]:
        return select(Classroom.id).where(Classroom.school_id.in_(self.school_ids()))

    def device_ids(self) -> Select[str]:
        return select(Device.id).where(Device.classroom_id.in_(self.classroom_ids()))

    def county(self) -> ColumnElement[bool]:
        if self.is_admin:
            return true()
        return County.id.in_(select(School.county_id).where(School.id.in_(self.school_ids())))

    def school(self) -> ColumnElement[bool]:
        return true() if self.is_admin else School.id.in_(self.school_ids())

    def classroom(self) -> ColumnElement[bool]:
        return true() if self.is_admin else Classroom.school_id.in_(self.school_ids())

    def device(self) -> ColumnElement[bool]:
        return true() if self.is_admin else Device.classroom_id.in_(self.classroom_ids())

    def pair(self) -> ColumnElement[bool]:
        if self.is_admin:
            return true()
        schools = self.school_ids()
        member = exists().where(PairMember.pair_id == Pair.id, PairMember.school_id.in_(schools))
        return or_(Pair.town_school_id.in_(schools), member)

    def lesson(self) -> ColumnElement[bool]:
        if self.is_admin:
            return true()
        rooms = self.classroom_ids()
        receiver = exists().where(
            LessonReceiver.lesson_id == Lesson.id, LessonReceiver.classroom_id.in_(rooms)
        )
        return or_(Lesson.main_classroom_id.in_(rooms), receiver)

    def alert(self) -> ColumnElement[bool]:
        if self.is_admin:
            return true()
        # Fleet-wide alerts (no classroom, no device) are for admins only.
        return or_(
            Alert.classroom_id.in_(self.classroom_ids()),
            Alert.device_id.in_(self.device_ids()),
        )

    def calendar_day(self) -> ColumnElement[bool]:
        """Calendar days of the province and of the places looked after."""
        if self.is_admin:
            return true()
        counties = select(School.county_id).where(School.id.in_(self.school_ids()))
        return or_(
            CalendarDay.level == "province",
            and_(CalendarDay.level == "county", CalendarDay.place_id.in_(counties)),
            and_(CalendarDay.level == "school", CalendarDay.place_id.in_(self.school_ids())),
            and_(CalendarDay.level == "classroom",
                 CalendarDay.place_id.in_(self.classroom_ids())),
        )

    def person(self) -> ColumnElement[bool]:
        p = self.principal
        if self.is_admin:
            return true()
        linked = exists().where(
            PersonSchool.person_id == Person.id, PersonSchool.school_id.in_(self.school_ids())
        )
        mine = Person.id == p.id
        if p.role is Role.COUNTY_TECH:
            return or_(mine, linked, Person.county_id == (p.county_id or -1))
        return or_(mine, linked)

    def get(self, session: Session, model: type[T], key: Any, what: str) -> T:
        """The object with primary key ``key`` if in scope, else 404."""
        predicate = _PREDICATES[model](self)
        pk = inspect(model).primary_key[0]
        obj = session.scalars(select(model).where(pk == key, predicate)).first()
        if obj is None:
            raise not_found(what)
        return obj


_PREDICATES: dict[type[Any], Any] = {
    County: Scope.county,
    School: Scope.school,
    Classroom: Scope.classroom,
    Device: Scope.device,
    Pair: Scope.pair,
    Lesson: Scope.lesson,
    Alert: Scope.alert,
    CalendarDay: Scope.calendar_day,
    Person: Scope.person,
}
