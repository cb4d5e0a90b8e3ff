"""Parsing one timetable cell: kinds, weekdays, dates, times, modes, classroom names.

Each parser takes what a CSV gives (text) or what openpyxl gives (int, date, time,
datetime) and raises FieldError with a bilingual reason (fleet.timetable.messages).
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet.db.models import Classroom, LessonMode, School
from fleet.inventory import find_school
from fleet.timetable import messages as msg
from fleet.timetable.errors import Text

__all__ = [
    "FieldError",
    "Places",
    "RowKind",
    "parse_date",
    "parse_kind",
    "parse_mode",
    "parse_time",
    "parse_weekday",
    "split_list",
]


class FieldError(ValueError):
    """A cell that does not parse: the message and the values to fill into it."""

    def __init__(self, text: Text, **values: Any) -> None:
        super().__init__(text(**values))
        self.text = text
        self.values = values


class RowKind(enum.StrEnum):
    WEEKLY = "weekly"  # 每周: every such weekday of the semester, holidays excluded
    ONCE = "once"  # 单次: one date
    HOLIDAY = "holiday"  # 节假日: no lessons that date
    WORKDAY = "workday"  # 调休: that date runs the lessons of the weekday given


_KINDS = {
    "weekly": RowKind.WEEKLY, "每周": RowKind.WEEKLY, "周": RowKind.WEEKLY,
    "once": RowKind.ONCE, "单次": RowKind.ONCE, "临时": RowKind.ONCE,
    "holiday": RowKind.HOLIDAY, "节假日": RowKind.HOLIDAY, "假日": RowKind.HOLIDAY,
    "停课": RowKind.HOLIDAY,
    "workday": RowKind.WORKDAY, "调休": RowKind.WORKDAY, "补班": RowKind.WORKDAY,
    "补课": RowKind.WORKDAY,
}
_MODES = {
    "live": LessonMode.LIVE, "直播": LessonMode.LIVE, "实时": LessonMode.LIVE,
    "recorded": LessonMode.RECORDED, "录播": LessonMode.RECORDED,
}
_WEEKDAYS = {
    **{n: i for i, n in enumerate("一二三四五六日", start=1)}, "天": 7,
    **{n: i for i, n in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), start=1)},
    **{n: i for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                   "saturday", "sunday"), start=1)},
}
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_TIME = re.compile(r"^(\d{1,2})\s*[:：.]\s*(\d{2})$")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_kind(value: Any, has_weekday: bool, has_date: bool) -> RowKind:
    text = _text(value).lower()
    if not text:
        # A blank kind is inferred: a weekday means weekly, a date means one-off.
        if has_weekday and not has_date:
            return RowKind.WEEKLY
        if has_date and not has_weekday:
            return RowKind.ONCE
        raise FieldError(msg.KIND_MISSING)
    try:
        return _KINDS[text]
    except KeyError:
        raise FieldError(msg.KIND_UNKNOWN, value=text) from None


def parse_weekday(value: Any) -> int:
    """1 = Monday … 7 = Sunday."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = _text(value).lower()
    for prefix in ("星期", "礼拜", "周"):
        text = text.removeprefix(prefix)
    if text.isdigit() and 1 <= int(text) <= 7:
        return int(text)
    if text in _WEEKDAYS:
        return _WEEKDAYS[text]
    raise FieldError(msg.WEEKDAY_BAD, value=_text(value))


def parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    match = _DATE.match(_text(value))
    if match:
        try:
            return date(*(int(g) for g in match.groups()))
        except ValueError:
            pass
    raise FieldError(msg.DATE_BAD, value=_text(value))


def parse_time(value: Any) -> time:
    if isinstance(value, datetime):
        return value.time().replace(second=0, microsecond=0)
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0)
    if isinstance(value, float) and 0 <= value < 1:  # an Excel time typed as a number
        minutes = round(value * 24 * 60)
        return time(minutes // 60, minutes % 60)
    match = _TIME.match(_text(value))
    if match:
        hour, minute = (int(g) for g in match.groups())
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise FieldError(msg.TIME_BAD, value=_text(value))


def parse_mode(value: Any) -> LessonMode:
    text = _text(value).lower()
    if not text:
        return LessonMode.LIVE
    try:
        return _MODES[text]
    except KeyError:
        raise FieldError(msg.MODE_UNKNOWN, value=text) from None


def split_list(value: Any) -> list[str]:
    """``甲校/教室;乙校`` → items; Chinese separators (；、，) are accepted too."""
    return [p.strip() for p in re.split(r"[;；,，、\n]", _text(value)) if p.strip()]


class Places:
    """Schools and classrooms looked up by the names a timetable uses.

    Each distinct reference is resolved once per import (a file names the same few
    classrooms thousands of times, and a bad file the same unknown one), from schools and
    classrooms read in one query each.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._schools: dict[str, list[School]] = defaultdict(list)
        for school in session.scalars(select(School).options(
                selectinload(School.county), selectinload(School.classrooms))):
            self._schools[school.name].append(school)
        self._found: dict[tuple[str, str, bool], School | Classroom | FieldError] = {}

    def _memo(self, key: tuple[str, str, bool], find: Callable[[], School | Classroom],
              ) -> School | Classroom:
        if key not in self._found:
            try:
                self._found[key] = find()
            except FieldError as exc:
                self._found[key] = exc
        found = self._found[key]
        if isinstance(found, FieldError):
            raise FieldError(found.text, **found.values)
        return found

    def school(self, ref: str) -> School:
        """A school by ``name`` or ``county/name``."""
        found = self._memo((ref, "", False), lambda: self._school(ref))
        assert isinstance(found, School)
        return found

    def classroom(self, school_ref: str, room: str) -> Classroom:
        """A classroom by school and name; a blank name means the school's only classroom."""
        found = self._memo((school_ref, room, True), lambda: self._classroom(school_ref, room))
        assert isinstance(found, Classroom)
        return found

    def classroom_ref(self, text: str) -> Classroom:
        """``学校/教室``, or ``学校`` for its only classroom (``区县/学校`` when names clash)."""
        try:
            self.school(text)
        except FieldError:
            if "/" in text:
                school_ref, _, room = text.rpartition("/")
                return self.classroom(school_ref.strip(), room.strip())
        return self.classroom(text, "")

    def _school(self, ref: str) -> School:
        if not ref:
            raise FieldError(msg.SCHOOL_MISSING)
        try:
            return find_school(self.session, ref, self._schools)
        except LookupError as exc:
            raise FieldError(Text.of(str(exc))) from None

    def _classroom(self, school_ref: str, room: str) -> Classroom:
        school = self.school(school_ref)
        rooms = school.classrooms
        if room:
            for candidate in rooms:
                if candidate.name == room:
                    return candidate
            raise FieldError(msg.CLASSROOM_UNKNOWN, school=school_ref, room=room)
        if len(rooms) == 1:
            return rooms[0]
        raise FieldError(msg.CLASSROOM_AMBIGUOUS, school=school_ref, count=len(rooms))
