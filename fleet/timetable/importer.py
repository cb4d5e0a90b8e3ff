"""Importing a semester timetable: all of a file, or nothing of it.

Weekly rows expand to every such weekday of the semester except holidays (given with
the semester, listed in the file, or already known in the database); one-off rows add
single dates.  Times are local to the main school (Asia/Shanghai unless it says
otherwise) and stored in UTC.  Lessons remember their file in ``Lesson.source``: importing
the same file again updates them in place (ids stay, so checks and alerts keep their
lesson) and removes the ones the file no longer has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from fleet.db.models import (
    Alert,
    CheckRun,
    Classroom,
    Holiday,
    Lesson,
    LessonMode,
    LessonReceiver,
)
from fleet.timetable.errors import RowError, TimetableError
from fleet.timetable.fields import (
    FieldError,
    RowKind,
    classroom_ref,
    parse_date,
    parse_kind,
    parse_mode,
    parse_time,
    parse_weekday,
    resolve_classroom,
    split_list,
)
from fleet.timetable.table import RawRow, read_table

__all__ = ["ImportResult", "Semester", "import_timetable", "source_of"]

T = TypeVar("T")
DEFAULT_HOLIDAY_NAME = "节假日"


@dataclass(frozen=True)
class Semester:
    start: date
    end: date
    holidays: tuple[date, ...] = ()
    name: str = ""  # 2026学年第二学期


@dataclass(frozen=True)
class ImportResult:
    source: str
    lessons: int  # lessons the file describes, after expansion
    created: int
    updated: int
    unchanged: int
    removed: int  # lessons of an earlier import of this file that it no longer has
    holidays: int  # holiday dates recorded


@dataclass
class _Spec:
    row: RawRow
    kind: RowKind
    weekday: int | None
    day: date | None
    start: time
    end: time
    subject: str
    grade: str
    teacher: str
    mode: LessonMode
    main: Classroom
    receivers: list[Classroom]


@dataclass(frozen=True)
class _Slot:
    """A classroom busy from ``starts_at`` to ``ends_at``: a file row or a stored lesson."""

    starts_at: datetime
    ends_at: datetime
    room: Classroom
    spec: _Spec | None = None
    lesson_id: int = 0
    lesson_source: str = ""


@dataclass
class _Parsed:
    specs: list[_Spec] = field(default_factory=list)
    holidays: dict[date, str] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)


def source_of(filename: str) -> str:
    return f"timetable:{PurePath(filename).name}"[:128]


def _text(row: RawRow, column: str) -> str:
    value = row.values.get(column)
    return "" if value is None else str(value).strip()


class _RowParser:
    """Collects a row's field errors; ``ok`` stays True only if every field parsed."""

    def __init__(self, row: RawRow, errors: list[RowError]) -> None:
        self.row = row
        self.errors = errors
        self.ok = True

    def field(self, column: str, parser: Callable[..., T], *args: Any) -> T | None:
        try:
            return parser(*args) if args else parser(self.row.values.get(column))
        except FieldError as exc:
            self.fail(column, str(exc))
            return None

    def fail(self, column: str, reason: str) -> None:
        self.errors.append(self.row.error(column, reason))
        self.ok = False


def _parse_row(session: Session, row: RawRow, parsed: _Parsed) -> None:
    p = _RowParser(row, parsed.errors)
    has_weekday, has_date = bool(_text(row, "weekday")), bool(_text(row, "date"))
    kind = RowKind.HOLIDAY if row.holiday_sheet else p.field(
        "kind", parse_kind, row.values.get("kind"), has_weekday, has_date)
    if kind is None:
        return
    if kind == RowKind.HOLIDAY:
        day = p.field("date", parse_date)
        if day is not None:
            parsed.holidays[day] = _text(row, "note") or _text(row, "subject") or \
                DEFAULT_HOLIDAY_NAME
        return
    weekday = day = None
    if kind == RowKind.WEEKLY:
        weekday = p.field("weekday", parse_weekday)
        if has_date:
            p.fail("date", "每周课程不填日期 / a weekly row takes no date")
    else:
        day = p.field("date", parse_date)
    start, end = p.field("start", parse_time), p.field("end", parse_time)
    if start is not None and end is not None and end <= start:
        p.fail("end", "结束时间早于或等于开始时间 / end is not after start")
    subject = _text(row, "subject")
    if not subject:
        p.fail("subject", "学科必填 / subject is required")
    mode = p.field("mode", parse_mode)
    main_column = "main_classroom" if _text(row, "main_classroom") else "main_school"
    main = p.field(main_column, resolve_classroom, session, _text(row, "main_school"),
                   _text(row, "main_classroom"))
    receivers: list[Classroom] = []
    refs = split_list(row.values.get("receivers"))
    if not refs:
        p.fail("receivers", "至少一个接收教室 / at least one receiving classroom")
    for ref in refs:
        room = p.field("receivers", classroom_ref, session, ref)
        if room is None:
            continue
        if main is not None and room.id == main.id:
            p.fail("receivers", f"接收教室就是主讲教室 / receiving classroom {ref} is the main one")
        elif room.id in {r.id for r in receivers}:
            p.fail("receivers", f"接收教室重复 / receiving classroom {ref} listed twice")
        else:
            receivers.append(room)
    if p.ok and start is not None and end is not None and mode is not None and main:
        parsed.specs.append(_Spec(row, kind, weekday, day, start, end, subject,
                                  _text(row, "grade"), _text(row, "teacher"), mode, main,
                                  receivers))


def _expand(spec: _Spec, semester: Semester, excluded: set[date],
            errors: list[RowError]) -> list[date]:
    if spec.day is not None:
        if not semester.start <= spec.day <= semester.end:
            errors.append(spec.row.error(
                "date", f"日期 {spec.day} 不在学期内 ({semester.start}–{semester.end}) / "
                        "date outside the semester"))
            return []
        if spec.day in excluded:
            errors.append(spec.row.error("date", f"{spec.day} 是节假日 / date is a holiday"))
            return []
        return [spec.day]
    first = semester.start + timedelta(days=(spec.weekday or 1) - semester.start.isoweekday())
    if first < semester.start:
        first += timedelta(days=7)
    days = []
    while first <= semester.end:
        if first not in excluded:
            days.append(first)
        first += timedelta(days=7)
    return days


def _slots(spec: _Spec, day: date) -> list[_Slot]:
    tz = ZoneInfo(spec.main.school.timezone)
    starts = datetime.combine(day, spec.start, tzinfo=tz).astimezone(UTC)
    ends = datetime.combine(day, spec.end, tzinfo=tz).astimezone(UTC)
    return [_Slot(starts, ends, room, spec) for room in (spec.main, *spec.receivers)]


def _stored_slots(session: Session, source: str, rooms: set[int], lo: datetime,
                  hi: datetime) -> list[_Slot]:
    lessons = session.scalars(
        select(Lesson).where(Lesson.source != source, Lesson.cancelled.is_(False),
                             Lesson.starts_at < hi, Lesson.ends_at > lo)
    ).all()
    return [_Slot(lesson.starts_at, lesson.ends_at, room, None, lesson.id, lesson.source)
            for lesson in lessons
            for room in (lesson.main_classroom, *(r.classroom for r in lesson.receivers))
            if room.id in rooms]


def _overlaps(slots: list[_Slot], errors: list[RowError]) -> None:
    """Report each file row that double-books a classroom, once per conflicting partner."""
    seen: set[tuple[int, str]] = set()
    latest: dict[int, _Slot] = {}  # room id -> the slot ending last so far
    for slot in sorted(slots, key=lambda s: (s.starts_at, s.spec.row.line if s.spec else 0)):
        prev = latest.get(slot.room.id)
        if prev is not None and slot.starts_at < prev.ends_at:
            row_slot, other = (slot, prev) if slot.spec else (prev, slot)
            if row_slot.spec is not None:
                if other.spec is not None:
                    partner = f"第 {other.spec.row.line} 行 / line {other.spec.row.line}"
                else:
                    partner = f"已有课程 #{other.lesson_id} ({other.lesson_source})"
                if (row_slot.spec.row.line, partner) not in seen:
                    seen.add((row_slot.spec.row.line, partner))
                    local = slot.starts_at.astimezone(ZoneInfo(slot.room.school.timezone))
                    errors.append(row_slot.spec.row.error(
                        "start", f"教室 {slot.room.school.name}/{slot.room.name} 在 "
                                 f"{local:%Y-%m-%d %H:%M} 与{partner}时间冲突 / "
                                 "classroom double-booked"))
        if prev is None or slot.ends_at > prev.ends_at:
            latest[slot.room.id] = slot


def _referenced(session: Session, lesson_id: int) -> bool:
    return bool(session.scalar(select(or_(
        exists().where(CheckRun.lesson_id == lesson_id),
        exists().where(Alert.lesson_id == lesson_id),
    ))))


def _apply(session: Session, source: str, occurrences: list[tuple[_Spec, datetime, datetime]],
           holidays: dict[date, str]) -> ImportResult:
    existing = {(lesson.main_classroom_id, lesson.starts_at): lesson
                for lesson in session.scalars(select(Lesson).where(Lesson.source == source))}
    created = updated = unchanged = removed = 0
    for spec, starts_at, ends_at in occurrences:
        values: dict[str, Any] = {
            "subject": spec.subject, "grade": spec.grade, "teacher": spec.teacher,
            "ends_at": ends_at, "mode": spec.mode, "cancelled": False,
        }
        wanted = [r.id for r in spec.receivers]
        lesson = existing.pop((spec.main.id, starts_at), None)
        if lesson is None:
            session.add(Lesson(source=source, main_classroom_id=spec.main.id,
                               starts_at=starts_at, receivers=[
                                   LessonReceiver(classroom_id=rid) for rid in wanted],
                               **values))
            created += 1
            continue
        changed = [k for k, v in values.items() if getattr(lesson, k) != v]
        for key in changed:
            setattr(lesson, key, values[key])
        have = {r.classroom_id: r for r in lesson.receivers}
        for rid in have.keys() - set(wanted):
            lesson.receivers.remove(have[rid])
        lesson.receivers.extend(LessonReceiver(classroom_id=rid) for rid in wanted
                                if rid not in have)
        if changed or have.keys() != set(wanted):
            updated += 1
        else:
            unchanged += 1
    for lesson in existing.values():
        # Checks and alerts keep pointing at a lesson they were about: cancel it instead.
        if _referenced(session, lesson.id):
            lesson.cancelled = True
        else:
            session.delete(lesson)
        removed += 1
    for day, name in holidays.items():
        holiday = session.get(Holiday, day)
        if holiday is None:
            session.add(Holiday(day=day, name=name))
        elif name != DEFAULT_HOLIDAY_NAME:
            holiday.name = name
    session.flush()
    return ImportResult(source, len(occurrences), created, updated, unchanged, removed,
                        len(holidays))


def import_timetable(session: Session, data: bytes, filename: str, *,
                     semester: Semester) -> ImportResult:
    """Import a ``.csv``/``.xlsx`` timetable; the caller commits.

    Raises TimetableError listing every bad row; the session is then left untouched.
    """
    if semester.end < semester.start:
        raise TimetableError([RowError(0, "", "学期结束早于开始 / semester ends before it starts")])
    source = source_of(filename)
    parsed = _Parsed()
    with session.no_autoflush:
        for row in read_table(data, filename):
            _parse_row(session, row, parsed)
        holidays = {day: DEFAULT_HOLIDAY_NAME for day in semester.holidays} | parsed.holidays
        excluded = set(holidays) | set(session.scalars(
            select(Holiday.day).where(Holiday.day >= semester.start, Holiday.day <= semester.end)))
        occurrences: list[tuple[_Spec, datetime, datetime]] = []
        slots: list[_Slot] = []
        for spec in parsed.specs:
            for day in _expand(spec, semester, excluded, parsed.errors):
                day_slots = _slots(spec, day)
                slots += day_slots
                occurrences.append((spec, day_slots[0].starts_at, day_slots[0].ends_at))
        if slots:
            lo = min(s.starts_at for s in slots)
            hi = max(s.ends_at for s in slots)
            slots += _stored_slots(session, source, {s.room.id for s in slots}, lo, hi)
        _overlaps(slots, parsed.errors)
    if parsed.errors:
        raise TimetableError(parsed.errors)
    return _apply(session, source, occurrences, holidays)
