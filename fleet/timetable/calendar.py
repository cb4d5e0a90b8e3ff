"""School calendars scoped to places, and what they make of a date for one classroom.

A calendar day belongs to the province, a county, a school or a classroom.  It closes
that place (节假日/停课: no lessons, alerts there muted) or makes it a make-up workday
(调休: "this Sunday runs Monday's lessons").  For a classroom on a date the most specific
day covering it decides (a school's 调休 beats the county's closure); at the same level a
closure wins.  A county publishes its calendar once and every school in it follows.

This is also the one place other modules ask "is this place closed today?" and "which
lessons does this classroom have on this date?" (``closure_for``, ``lessons_on``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from fleet.db.models import CalendarDay, Classroom, Lesson, LessonReceiver, School

__all__ = [
    "Calendar",
    "Level",
    "Place",
    "closure_for",
    "days",
    "lessons_on",
    "place_of",
]


class Level(enum.StrEnum):
    PROVINCE = "province"
    COUNTY = "county"
    SCHOOL = "school"
    CLASSROOM = "classroom"


_RANK = {Level.PROVINCE: 0, Level.COUNTY: 1, Level.SCHOOL: 2, Level.CLASSROOM: 3}


@dataclass(frozen=True)
class Place:
    """Where something is: a classroom's ids up to its county (None: not known)."""

    classroom_id: int | None = None
    school_id: int | None = None
    county_id: int | None = None

    def covered_by(self, level: str, place_id: int) -> bool:
        if level == Level.PROVINCE:
            return True
        ids = {Level.COUNTY: self.county_id, Level.SCHOOL: self.school_id,
               Level.CLASSROOM: self.classroom_id}
        return ids.get(Level(level)) == place_id

    @classmethod
    def of_labels(cls, labels: Mapping[str, str]) -> Place:
        """An alert's place from its labels (a fleet-wide alert has none)."""

        def number(key: str) -> int | None:
            value = labels.get(key, "")
            return int(value) if value.isdigit() else None

        return cls(number("classroom_id"), number("school_id"), number("county_id"))


def place_of(room: Classroom) -> Place:
    return Place(room.id, room.school_id, room.school.county_id)


@dataclass(frozen=True)
class Day:
    day: date
    name: str
    level: str
    place_id: int
    runs_weekday: int | None  # None: closed

    @property
    def closed(self) -> bool:
        return self.runs_weekday is None

    @classmethod
    def of(cls, row: CalendarDay) -> Day:
        return cls(row.day, row.name, row.level, row.place_id, row.runs_weekday)


class Calendar:
    """The calendar days of a date range, answering for any place."""

    def __init__(self, entries: Iterable[Day] = ()) -> None:
        self._by_day: dict[date, list[Day]] = {}
        for entry in entries:
            self.add(entry)

    @classmethod
    def load(cls, session: Session, first: date, last: date) -> Calendar:
        rows = session.scalars(select(CalendarDay).where(CalendarDay.day >= first,
                                                         CalendarDay.day <= last))
        return cls(Day.of(row) for row in rows)

    def add(self, entry: Day) -> None:
        """Add or replace the day of that place."""
        same = self._by_day.setdefault(entry.day, [])
        same[:] = [e for e in same if (e.level, e.place_id) != (entry.level, entry.place_id)]
        same.append(entry)

    def deciding(self, day: date, place: Place) -> Day | None:
        """The day that decides ``place`` on ``day``, if any."""
        covering = [e for e in self._by_day.get(day, ()) if place.covered_by(e.level, e.place_id)]
        if not covering:
            return None
        return max(covering, key=lambda e: (_RANK[Level(e.level)], e.closed))

    def closure(self, day: date, place: Place) -> Day | None:
        entry = self.deciding(day, place)
        return entry if entry is not None and entry.closed else None

    def weekday(self, day: date, place: Place) -> int | None:
        """Whose lessons ``place`` runs on ``day`` (1 = Monday); None when closed."""
        entry = self.deciding(day, place)
        if entry is None:
            return day.isoweekday()
        return entry.runs_weekday

    def days_by_weekday(self, first: date, last: date, place: Place) -> dict[int, list[date]]:
        """The dates from ``first`` to ``last`` that run each weekday's lessons."""
        found: dict[int, list[date]] = {}
        for day in days(first, last):
            weekday = self.weekday(day, place)
            if weekday is not None:
                found.setdefault(weekday, []).append(day)
        return found


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def closure_for(session: Session, place: Place, day: date) -> str | None:
    """The name of the closure covering ``place`` on ``day`` (``节假日`` if unnamed), or None."""
    entry = Calendar.load(session, day, day).closure(day, place)
    return None if entry is None else entry.name or "节假日"


def lessons_on(session: Session, classroom_id: int, day: date) -> list[Lesson]:
    """The lessons (not cancelled) using a classroom, as main or receiving classroom, that
    start on its school's local date ``day``, in time order."""
    zone = ZoneInfo(session.scalar(select(School.timezone).join(Classroom).where(
        Classroom.id == classroom_id)) or "Asia/Shanghai")
    lo = datetime.combine(day, time(), zone).astimezone(UTC)
    hi = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    receiver = exists().where(LessonReceiver.lesson_id == Lesson.id,
                              LessonReceiver.classroom_id == classroom_id)
    return list(session.scalars(
        select(Lesson).where(Lesson.cancelled.is_(False), Lesson.starts_at >= lo,
                             Lesson.starts_at < hi,
                             or_(Lesson.main_classroom_id == classroom_id, receiver))
        .order_by(Lesson.starts_at, Lesson.id)))
