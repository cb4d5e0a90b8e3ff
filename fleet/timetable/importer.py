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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from fleet.db.models import (
    Alert,
    CheckRun,
    Classroom,
    Holiday,
    Lesson,
    LessonMode,
    LessonReceiver,
)
from fleet.timetable import messages as msg
from fleet.timetable.errors import MAX_ERRORS, ErrorLog, RowError, Text, TimetableError
from fleet.timetable.fields import (
    FieldError,
    Places,
    RowKind,
    parse_date,
    parse_kind,
    parse_mode,
    parse_time,
    parse_weekday,
    split_list,
)
from fleet.timetable.table import RawRow, read_table

__all__ = ["ImportResult", "Semester", "import_timetable", "source_of"]

T = TypeVar("T")
DEFAULT_HOLIDAY_NAME = "节假日"
_BATCH = 1000  # lessons per INSERT
_NO_VALUES: dict[str, Any] = {}
Progress = Callable[[int], None]  # told the number of rows read so far


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


@dataclass(slots=True)
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


@dataclass(frozen=True, slots=True)
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
    places: Places
    errors: ErrorLog
    specs: list[_Spec] = field(default_factory=list)
    holidays: dict[date, str] = field(default_factory=dict)


def source_of(filename: str) -> str:
    return f"timetable:{PurePath(filename).name}"[:128]


def _text(row: RawRow, column: str) -> str:
    value = row.values.get(column)
    return "" if value is None else str(value).strip()


class _RowParser:
    """Collects a row's field errors; ``ok`` stays True only if every field parsed."""

    def __init__(self, row: RawRow, errors: ErrorLog) -> None:
        self.row = row
        self.errors = errors
        self.ok = True

    def field(self, column: str, parser: Callable[..., T], *args: Any) -> T | None:
        try:
            return parser(*args) if args else parser(self.row.values.get(column))
        except FieldError as exc:
            self.fail(column, exc.text, **exc.values)
            return None

    def fail(self, column: str, text: Text, **values: Any) -> None:
        self.errors.append(self.row.error(column, text, **values))
        self.ok = False


def _parse_row(row: RawRow, parsed: _Parsed) -> None:
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
            p.fail("date", msg.WEEKLY_WITH_DATE)
    else:
        day = p.field("date", parse_date)
    start, end = p.field("start", parse_time), p.field("end", parse_time)
    if start is not None and end is not None and end <= start:
        p.fail("end", msg.END_NOT_AFTER_START)
    subject = _text(row, "subject")
    if not subject:
        p.fail("subject", msg.SUBJECT_MISSING)
    mode = p.field("mode", parse_mode)
    # The school is checked on its own first, so an unknown school is blamed on its cell.
    main = None
    if p.field("main_school", parsed.places.school, _text(row, "main_school")) is not None:
        main_column = "main_classroom" if _text(row, "main_classroom") else "main_school"
        main = p.field(main_column, parsed.places.classroom, _text(row, "main_school"),
                       _text(row, "main_classroom"))
    receivers: list[Classroom] = []
    refs = split_list(row.values.get("receivers"))
    if not refs:
        p.fail("receivers", msg.NO_RECEIVER)
    for ref in refs:
        room = p.field("receivers", parsed.places.classroom_ref, ref)
        if room is None:
            continue
        if main is not None and room.id == main.id:
            p.fail("receivers", msg.RECEIVER_IS_MAIN, ref=ref)
        elif room.id in {r.id for r in receivers}:
            p.fail("receivers", msg.RECEIVER_TWICE, ref=ref)
        else:
            receivers.append(room)
    if p.ok and start is not None and end is not None and mode is not None and main:
        # The cells are no longer needed, only where the row is (for later errors).
        parsed.specs.append(_Spec(replace(row, values=_NO_VALUES), kind, weekday, day, start,
                                  end, subject,
                                  _text(row, "grade"), _text(row, "teacher"), mode, main,
                                  receivers))


def _expand(spec: _Spec, semester: Semester, excluded: set[date],
            errors: ErrorLog) -> list[date]:
    if spec.day is not None:
        if not semester.start <= spec.day <= semester.end:
            errors.append(spec.row.error("date", msg.OUTSIDE_SEMESTER, day=spec.day,
                                         start=semester.start, end=semester.end))
            return []
        if spec.day in excluded:
            errors.append(spec.row.error("date", msg.ON_HOLIDAY, day=spec.day))
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
        .options(selectinload(Lesson.main_classroom), selectinload(Lesson.receivers)
                 .selectinload(LessonReceiver.classroom))
    ).all()
    return [_Slot(lesson.starts_at, lesson.ends_at, room, None, lesson.id, lesson.source)
            for lesson in lessons
            for room in (lesson.main_classroom, *(r.classroom for r in lesson.receivers))
            if room.id in rooms]


def _overlaps(slots: list[_Slot], errors: ErrorLog) -> None:
    """Report each file row that double-books a classroom, once per conflicting partner."""
    seen: set[tuple[int, str, int]] = set()
    latest: dict[int, _Slot] = {}  # room id -> the slot ending last so far
    for slot in sorted(slots, key=lambda s: (s.starts_at, s.spec.row.line if s.spec else 0)):
        prev = latest.get(slot.room.id)
        if prev is not None and slot.starts_at < prev.ends_at:
            row_slot, other = (slot, prev) if slot.spec else (prev, slot)
            if row_slot.spec is not None:
                row = row_slot.spec.row
                partner = (row.line, other.spec.row.sheet, other.spec.row.line) if other.spec \
                    else (row.line, other.lesson_source, other.lesson_id)
                if partner not in seen:
                    seen.add(partner)
                    local = slot.starts_at.astimezone(ZoneInfo(slot.room.school.timezone))
                    room = f"{slot.room.school.name}/{slot.room.name}"
                    when = f"{local:%Y-%m-%d %H:%M}"
                    if other.spec is not None:
                        errors.append(row.error("start", msg.CLASH_WITH_ROW, room=room,
                                                when=when, line=other.spec.row.line))
                    else:
                        errors.append(row.error("start", msg.CLASH_WITH_LESSON, room=room,
                                                when=when, lesson=other.lesson_id,
                                                source=other.lesson_source))
        if prev is None or slot.ends_at > prev.ends_at:
            latest[slot.room.id] = slot


def _referenced(session: Session, lesson_ids: list[int]) -> set[int]:
    """Which of these lessons a check run or an alert points at."""
    found: set[int] = set()
    for at in range(0, len(lesson_ids), _BATCH):
        chunk = lesson_ids[at:at + _BATCH]
        found.update(session.scalars(select(CheckRun.lesson_id).where(
            CheckRun.lesson_id.in_(chunk))))
        found.update(session.scalars(select(Alert.lesson_id).where(Alert.lesson_id.in_(chunk))))
    return found


def _apply(session: Session, source: str, occurrences: list[tuple[_Spec, datetime, datetime]],
           holidays: dict[date, str]) -> ImportResult:
    existing = {(lesson.main_classroom_id, lesson.starts_at): lesson
                for lesson in session.scalars(select(Lesson).where(Lesson.source == source)
                                              .options(selectinload(Lesson.receivers)))}
    new: list[tuple[_Spec, datetime, datetime]] = []
    updated = unchanged = 0
    for spec, starts_at, ends_at in occurrences:
        lesson = existing.pop((spec.main.id, starts_at), None)
        if lesson is None:
            new.append((spec, starts_at, ends_at))
            continue
        values = _values(spec, ends_at)
        wanted = [r.id for r in spec.receivers]
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
    referenced = _referenced(session, [lesson.id for lesson in existing.values()])
    for lesson in existing.values():
        # Checks and alerts keep pointing at a lesson they were about: cancel it instead.
        if lesson.id in referenced:
            lesson.cancelled = True
        else:
            session.delete(lesson)
    removed = len(existing)
    created = _insert(session, source, new)
    for day, name in holidays.items():
        holiday = session.get(Holiday, day)
        if holiday is None:
            session.add(Holiday(day=day, name=name))
        elif name != DEFAULT_HOLIDAY_NAME:
            holiday.name = name
    session.flush()
    return ImportResult(source, len(occurrences), created, updated, unchanged, removed,
                        len(holidays))


def _values(spec: _Spec, ends_at: datetime) -> dict[str, Any]:
    return {"subject": spec.subject, "grade": spec.grade, "teacher": spec.teacher,
            "ends_at": ends_at, "mode": spec.mode, "cancelled": False}


def _insert(session: Session, source: str, new: list[tuple[_Spec, datetime, datetime]]) -> int:
    """New lessons and their receivers, a batch per statement rather than an object each
    (and the rows of a batch built only for it)."""
    for at in range(0, len(new), _BATCH):
        batch = new[at:at + _BATCH]
        rows = [{"source": source, "main_classroom_id": spec.main.id, "starts_at": starts_at,
                 **_values(spec, ends_at)} for spec, starts_at, ends_at in batch]
        ids = session.scalars(insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                              rows).all()
        receivers = [{"lesson_id": lesson_id, "classroom_id": room.id}
                     for lesson_id, (spec, _, _) in zip(ids, batch, strict=True)
                     for room in spec.receivers]
        if receivers:
            session.execute(insert(LessonReceiver), receivers)
    return len(new)


def import_timetable(session: Session, data: bytes | BinaryIO, filename: str, *,
                     semester: Semester, max_errors: int = MAX_ERRORS,
                     progress: Progress | None = None) -> ImportResult:
    """Import a ``.csv``/``.xlsx`` timetable (its content or a seekable binary file), read
    as a stream; the caller commits.

    Raises TimetableError listing the first ``max_errors`` bad rows and how many there
    were; the session is then left untouched.  ``progress`` hears the rows read so far.
    """
    if semester.end < semester.start:
        raise TimetableError([RowError(0, "", msg.SEMESTER_BACKWARDS())])
    source = source_of(filename)
    parsed = _Parsed(Places(session), ErrorLog(max_errors))
    with session.no_autoflush:
        count = 0
        try:
            for count, row in enumerate(read_table(data, filename), start=1):
                _parse_row(row, parsed)
                if progress is not None and count % _BATCH == 0:
                    progress(count)
            if progress is not None and count % _BATCH:
                progress(count)
        except TimetableError as exc:
            # The file itself is unusable (a header, an encoding): under the same cap,
            # with whatever rows before it got wrong.
            parsed.errors.extend(exc)
            raise TimetableError(parsed.errors) from None
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
