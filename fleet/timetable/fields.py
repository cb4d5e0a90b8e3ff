"""Parsing one timetable cell: kinds, weekdays, dates, times, modes, classroom names.

Each parser takes what a CSV gives (text) or what openpyxl gives (int, date, time,
datetime) and raises FieldError with a bilingual reason.
"""

from __future__ import annotations

import enum
import re
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db.models import Classroom, LessonMode, School
from fleet.inventory import find_school

__all__ = [
    "FieldError",
    "RowKind",
    "classroom_ref",
    "parse_date",
    "parse_kind",
    "parse_mode",
    "parse_time",
    "parse_weekday",
    "resolve_classroom",
    "split_list",
]


class FieldError(ValueError):
    pass


class RowKind(enum.StrEnum):
    WEEKLY = "weekly"  # 每周: every such weekday of the semester, holidays excluded
    ONCE = "once"  # 单次: one date
    HOLIDAY = "holiday"  # 节假日: no lessons that date


_KINDS = {
    "weekly": RowKind.WEEKLY, "每周": RowKind.WEEKLY, "周": RowKind.WEEKLY,
    "once": RowKind.ONCE, "单次": RowKind.ONCE, "临时": RowKind.ONCE,
    "holiday": RowKind.HOLIDAY, "节假日": RowKind.HOLIDAY, "假日": RowKind.HOLIDAY,
    "停课": RowKind.HOLIDAY,
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
        raise FieldError("请填写类型：每周/单次/节假日 / kind must be weekly, once or holiday")
    try:
        return _KINDS[text]
    except KeyError:
        raise FieldError(f"未知类型 {text!r}，应为 每周/单次/节假日 / "
                         "kind must be weekly, once or holiday") from None


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
    raise FieldError(f"星期无效 {_text(value)!r}，应为 1-7 或 周一…周日 / "
                     "bad weekday: use 1-7 or Mon-Sun")


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
    raise FieldError(f"日期无效 {_text(value)!r}，应为 2026-03-02 / bad date: use YYYY-MM-DD")


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
    raise FieldError(f"时间无效 {_text(value)!r}，应为 08:00 / bad time: use HH:MM")


def parse_mode(value: Any) -> LessonMode:
    text = _text(value).lower()
    if not text:
        return LessonMode.LIVE
    try:
        return _MODES[text]
    except KeyError:
        raise FieldError(f"未知方式 {text!r}，应为 直播/录播 / mode must be live or recorded"
                         ) from None


def split_list(value: Any) -> list[str]:
    """``甲校/教室;乙校`` → items; Chinese separators (；、，) are accepted too."""
    return [p.strip() for p in re.split(r"[;；,，、\n]", _text(value)) if p.strip()]


def resolve_classroom(session: Session, school_ref: str, room: str) -> Classroom:
    """A classroom by school and name; a blank name means the school's only classroom."""
    try:
        school: School = find_school(session, school_ref)
    except LookupError as exc:
        raise FieldError(str(exc)) from None
    rooms = session.scalars(select(Classroom).where(Classroom.school_id == school.id)).all()
    if room:
        for candidate in rooms:
            if candidate.name == room:
                return candidate
        raise FieldError(f"未知教室 / unknown classroom {school_ref}/{room}")
    if len(rooms) == 1:
        return rooms[0]
    raise FieldError(f"{school_ref} 有 {len(rooms)} 间教室，请写明教室 / "
                     f"{school_ref} has {len(rooms)} classrooms: name one")


def classroom_ref(session: Session, text: str) -> Classroom:
    """``学校/教室``, or ``学校`` for its only classroom (``区县/学校`` when names clash)."""
    try:
        find_school(session, text)
    except LookupError:
        if "/" in text:
            school_ref, _, room = text.rpartition("/")
            return resolve_classroom(session, school_ref.strip(), room.strip())
    return resolve_classroom(session, text, "")
