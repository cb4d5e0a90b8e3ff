"""Importing a school's (or a pair's) semester timetable: all of a file, or nothing of it.

The file is one schedule: the school (or pair) its lessons are given by, for one
semester.  Importing it again, under any file name, replaces that schedule's lessons and
nothing else: matching lessons are updated in place (ids stay, so checks and alerts keep
their lesson), the ones the file no longer has are removed.  A lesson changed by hand on
the day (cancelled, moved) is kept and shown as a conflict.  ``dry_run`` answers what
would change (the preview a person confirms) and writes nothing.

Weekly rows expand to the dates of the semester that run that weekday in the main
classroom's calendar (``fleet.timetable.calendar``: closures skip a date, a make-up
workday runs another weekday's lessons, a closed receiving classroom is left out of that
date's lesson); one-off rows add single dates.  The rows are kept with the schedule, so
a calendar day published or removed later re-lays the dates it touches at once
(``recalendar``), through the same expansion, plan and write as an import.  Holiday and
调休 rows of the file, and the semester's holidays, belong to the schedule's school(s).
Times are local to the main school (Asia/Shanghai unless it says otherwise) and stored
in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session, selectinload

from fleet.db.base import utcnow
from fleet.db.models import (
    Alert,
    CalendarDay,
    CheckRun,
    Classroom,
    Lesson,
    LessonMode,
    LessonReceiver,
    Pair,
    Schedule,
    ScheduleRow,
    School,
    Term,
)
from fleet.timetable import messages as msg
from fleet.timetable.calendar import Calendar, Day, Level, Place, place_of
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

__all__ = ["Change", "ImportResult", "Recalendared", "Semester", "import_timetable", "recalendar",
           "referenced", "source_of"]

T = TypeVar("T")
DEFAULT_HOLIDAY_NAME = "节假日"
_BATCH = 1000  # lessons per INSERT
PREVIEW_MAX = 500  # changes a preview lists (all are counted)
_NO_VALUES: dict[str, Any] = {}
Progress = Callable[[int], None]  # told the number of rows read so far


@dataclass(frozen=True)
class Semester:
    start: date
    end: date
    holidays: tuple[date, ...] = ()
    name: str = ""  # 2026学年第二学期

    @property
    def key(self) -> str:
        """What identifies the semester: its name, or its dates when unnamed."""
        return self.name or f"{self.start.isoformat()}~{self.end.isoformat()}"


@dataclass(frozen=True)
class Change:
    """One line of an import's preview, at the main classroom's local date and times."""

    change: str  # added / changed / cancelled / conflict
    day: date
    classroom_id: int
    classroom: str  # 学校/教室
    starts: str  # HH:MM
    ends: str
    subject: str
    detail: str = ""  # 简体中文 / English: what differs, or the manual change kept
    lesson_id: int | None = None


@dataclass(frozen=True)
class ImportResult:
    source: str
    lessons: int  # lessons the file describes, after expansion
    created: int
    updated: int
    unchanged: int
    removed: int  # lessons of the schedule that the file no longer has
    holidays: int  # calendar days (closures and make-up workdays) the file gives
    conflicts: int = 0  # lessons changed by hand that the file would change: kept
    schedule: str = ""  # whose schedule: the school's or the pair's name
    semester: str = ""
    dry_run: bool = False
    changes: tuple[Change, ...] = ()  # the first PREVIEW_MAX, by date and classroom
    classroom_ids: frozenset[int] = frozenset()  # every classroom the import touches


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
    workdays: dict[date, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Owner:
    """Whose schedule a file is: a school or a pair, and the schools it covers."""

    key: str  # school:<id> / pair:<id>
    name: str
    school_id: int | None
    pair_id: int | None
    schools: frozenset[int]


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
    if kind == RowKind.WORKDAY:
        day, runs = p.field("date", parse_date), p.field("weekday", parse_weekday)
        if day is not None and runs is not None:
            parsed.workdays[day] = (runs, _text(row, "note") or "调休")
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


def _expand(spec: _Spec, semester: Semester, calendar: Calendar,
            by_weekday: dict[int, dict[int, list[date]]], errors: ErrorLog) -> list[date]:
    place = place_of(spec.main)
    if spec.day is not None:
        if not semester.start <= spec.day <= semester.end:
            errors.append(spec.row.error("date", msg.OUTSIDE_SEMESTER, day=spec.day,
                                         start=semester.start, end=semester.end))
            return []
        if calendar.closure(spec.day, place) is not None:
            errors.append(spec.row.error("date", msg.ON_HOLIDAY, day=spec.day))
            return []
        return [spec.day]
    if spec.main.id not in by_weekday:
        by_weekday[spec.main.id] = calendar.days_by_weekday(semester.start, semester.end, place)
    return by_weekday[spec.main.id].get(spec.weekday or 1, [])


def _expand_all(specs: Iterable[_Spec], semester: Semester, calendar: Calendar,
                errors: ErrorLog) -> Iterator[tuple[_Spec, date]]:
    """Each row's dates in the semester under ``calendar``: what an import lays out, and
    what a calendar change re-lays for the dates it touches (``recalendar``).  A receiving
    classroom closed that date is left out of that date's lesson (the others still have
    it; with none left there is no synchronous lesson)."""
    by_weekday: dict[int, dict[int, list[date]]] = {}
    places: dict[int, Place] = {}
    for spec in specs:
        for room in spec.receivers:
            if room.id not in places:
                places[room.id] = place_of(room)
        for when in _expand(spec, semester, calendar, by_weekday, errors):
            open_ = [room for room in spec.receivers
                     if calendar.closure(when, places[room.id]) is None]
            if len(open_) == len(spec.receivers):
                yield spec, when
            elif open_:
                yield replace(spec, receivers=open_), when


def _slots(spec: _Spec, day: date) -> list[_Slot]:
    tz = ZoneInfo(spec.main.school.timezone)
    starts = datetime.combine(day, spec.start, tzinfo=tz).astimezone(UTC)
    ends = datetime.combine(day, spec.end, tzinfo=tz).astimezone(UTC)
    return [_Slot(starts, ends, room, spec) for room in (spec.main, *spec.receivers)]


def _stored_slots(session: Session, replaced: set[int], rooms: set[int], lo: datetime,
                  hi: datetime) -> list[_Slot]:
    """Lessons the import keeps (other schedules', and manual changes) in these rooms."""
    lessons = session.scalars(
        select(Lesson).where(Lesson.cancelled.is_(False),
                             Lesson.starts_at < hi, Lesson.ends_at > lo)
        .options(selectinload(Lesson.main_classroom), selectinload(Lesson.receivers)
                 .selectinload(LessonReceiver.classroom))
    ).all()
    return [_Slot(lesson.starts_at, lesson.ends_at, room, None, lesson.id, lesson.source)
            for lesson in lessons if lesson.id not in replaced
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


def _owners(session: Session, parsed: _Parsed, school: str, pair: str) -> list[_Owner]:
    """The school or pair named, else each school the file's lessons are given by (a
    county's file is each of its schools' schedule); empty (with an error) when unknown."""
    if pair:
        found = session.scalars(select(Pair).where(Pair.name == pair)
                                .options(selectinload(Pair.members))).first()
        if found is None:
            parsed.errors.append(RowError(0, "pair", msg.PAIR_UNKNOWN(ref=pair)))
            return []
        return [_pair_owner(found)]
    if school:
        try:
            named = parsed.places.school(school)
        except FieldError as exc:
            parsed.errors.append(RowError(0, "school", exc.text(**exc.values)))
            return []
        return [_school_owner(named)]
    mains = {spec.main.school_id: spec.main.school for spec in parsed.specs}
    return [_school_owner(mains[key]) for key in sorted(mains)]


def _school_owner(school: School) -> _Owner:
    return _Owner(f"school:{school.id}", school.name, school.id, None, frozenset({school.id}))


def _pair_owner(pair: Pair) -> _Owner:
    schools = frozenset({pair.town_school_id, *(m.school_id for m in pair.members)})
    return _Owner(f"pair:{pair.id}", pair.name, None, pair.id, schools)


def _schedule(session: Session, owner: _Owner, semester: Semester) -> Schedule | None:
    return session.scalars(select(Schedule).join(Term).where(
        Term.name == semester.key, Schedule.owner == owner.key)).first()


def _existing(session: Session, owners: list[_Owner], semester: Semester, lo: datetime,
              hi: datetime) -> list[Lesson]:
    """The schedules' lessons an import matches, and lessons imported by file name before
    schedules existed (adopted by the school's first import of the semester)."""
    schools = {school for owner in owners for school in owner.schools}
    rooms = select(Classroom.id).where(Classroom.school_id.in_(schools))
    legacy = and_(Lesson.schedule_id.is_(None), Lesson.source.like("timetable:%"),
                  Lesson.main_classroom_id.in_(rooms), Lesson.starts_at >= lo,
                  Lesson.starts_at < hi)
    ids = [s.id for owner in owners if (s := _schedule(session, owner, semester)) is not None]
    return list(session.scalars(
        select(Lesson).where(or_(Lesson.schedule_id.in_(ids), legacy),
                             Lesson.edit.not_in(("added", "moved_away")))
        .options(selectinload(Lesson.receivers).selectinload(LessonReceiver.classroom)
                 .selectinload(Classroom.school),
                 selectinload(Lesson.main_classroom).selectinload(Classroom.school))))


def _key(lesson: Lesson) -> tuple[int, datetime]:
    """Where the schedule put a lesson, even after it was moved by hand."""
    return (lesson.planned_classroom_id or lesson.main_classroom_id,
            lesson.planned_at or lesson.starts_at)


_Occurrence = tuple[_Spec, datetime, datetime]
_FIELDS = {"subject": msg.SUBJECT_CHANGED, "grade": msg.GRADE_CHANGED,
           "teacher": msg.TEACHER_CHANGED, "ends_at": msg.END_CHANGED, "mode": msg.MODE_CHANGED}


@dataclass
class _Plan:
    new: list[_Occurrence] = field(default_factory=list)
    updates: list[tuple[Lesson, _Occurrence]] = field(default_factory=list)
    removed: list[Lesson] = field(default_factory=list)
    unchanged: int = 0
    conflicts: int = 0
    _changes: list[Change] = field(default_factory=list)

    def add(self, change: Change) -> None:
        """Keep the first PREVIEW_MAX changes by date and classroom, trimming whenever
        the list doubles, so a whole semester's first import holds 500, not 60 000."""
        self._changes.append(change)
        if len(self._changes) >= 2 * PREVIEW_MAX:
            self._changes = self.changes()

    def changes(self) -> list[Change]:
        return sorted(self._changes, key=_change_order)[:PREVIEW_MAX]


def _change_order(change: Change) -> tuple[date, str, str, str]:
    return change.day, change.classroom, change.starts, change.change


def _local(when: datetime, room: Classroom) -> datetime:
    return when.astimezone(ZoneInfo(room.school.timezone))


def _change(kind: str, room: Classroom, starts_at: datetime, ends_at: datetime, subject: str,
            detail: str = "", lesson_id: int | None = None) -> Change:
    start = _local(starts_at, room)
    return Change(kind, start.date(), room.id, f"{room.school.name}/{room.name}",
                  f"{start:%H:%M}", f"{_local(ends_at, room):%H:%M}", subject, detail, lesson_id)


def _differences(lesson: Lesson, spec: _Spec, ends_at: datetime) -> list[str]:
    values = _values(spec, ends_at)
    texts = []
    for key, text in _FIELDS.items():
        old, new = getattr(lesson, key), values[key]
        if old != new:
            if isinstance(old, datetime):
                old, new = f"{_local(old, spec.main):%H:%M}", f"{_local(new, spec.main):%H:%M}"
            texts.append(text(old=old, new=new))
    have = sorted(f"{r.classroom.school.name}/{r.classroom.name}" for r in lesson.receivers)
    want = sorted(f"{r.school.name}/{r.name}" for r in spec.receivers)
    if {r.classroom_id for r in lesson.receivers} != {r.id for r in spec.receivers}:
        texts.append(msg.RECEIVERS_CHANGED(old="、".join(have), new="、".join(want)))
    if lesson.cancelled:
        texts.append(msg.REINSTATED())
    return texts


_EDITS = {"cancelled": "取消 cancelled", "moved": "调整 moved"}


def _conflict(lesson: Lesson, occurrence: _Occurrence | None) -> Change:
    room = lesson.main_classroom
    at = f"{_local(lesson.starts_at, room):%m-%d %H:%M} {room.name}"
    edit = _EDITS.get(lesson.edit, lesson.edit)
    if occurrence is None:
        detail = msg.KEPT_EDIT_GONE(edit=edit, at=at)
    else:
        spec, starts_at, _ = occurrence
        planned = f"{_local(starts_at, spec.main):%m-%d %H:%M} {spec.main.name} {spec.subject}"
        detail = msg.KEPT_EDIT(edit=edit, at=at, planned=planned)
    return _change("conflict", room, lesson.starts_at, lesson.ends_at, lesson.subject, detail,
                   lesson.id)


def _plan(existing: list[Lesson], occurrences: list[_Occurrence]) -> _Plan:
    plan = _Plan()
    by_key = {_key(lesson): lesson for lesson in existing}
    for occurrence in occurrences:
        spec, starts_at, ends_at = occurrence
        lesson = by_key.pop((spec.main.id, starts_at), None)
        if lesson is None:
            plan.new.append(occurrence)
            plan.add(_change("added", spec.main, starts_at, ends_at, spec.subject))
        elif lesson.edit:
            plan.conflicts += 1
            plan.add(_conflict(lesson, occurrence))
        elif differences := _differences(lesson, spec, ends_at):
            plan.updates.append((lesson, occurrence))
            plan.add(_change("changed", spec.main, starts_at, ends_at, spec.subject,
                                        "；".join(differences), lesson.id))
        else:
            plan.unchanged += 1
    for lesson in by_key.values():
        if lesson.edit:
            plan.conflicts += 1
            plan.add(_conflict(lesson, None))
        elif not lesson.cancelled:
            plan.removed.append(lesson)
            plan.add(_change("cancelled", lesson.main_classroom, lesson.starts_at,
                                        lesson.ends_at, lesson.subject, lesson_id=lesson.id))
    return plan


def referenced(session: Session, lesson_ids: list[int]) -> set[int]:
    """Which of these lessons a check run or an alert points at."""
    found: set[int] = set()
    for at in range(0, len(lesson_ids), _BATCH):
        chunk = lesson_ids[at:at + _BATCH]
        found.update(session.scalars(select(CheckRun.lesson_id).where(
            CheckRun.lesson_id.in_(chunk))))
        found.update(session.scalars(select(Alert.lesson_id).where(Alert.lesson_id.in_(chunk))))
    return found


def _values(spec: _Spec, ends_at: datetime) -> dict[str, Any]:
    return {"subject": spec.subject, "grade": spec.grade, "teacher": spec.teacher,
            "ends_at": ends_at, "mode": spec.mode, "cancelled": False}


def _write_schedule(session: Session, owner: _Owner, semester: Semester,
                    filename: str) -> Schedule:
    term = session.scalars(select(Term).where(Term.name == semester.key)).first()
    if term is None:
        term = Term(name=semester.key, start=semester.start, end=semester.end)
        session.add(term)
    else:
        term.start, term.end = semester.start, semester.end
    session.flush()
    schedule = _schedule(session, owner, semester)
    if schedule is None:
        schedule = Schedule(semester_id=term.id, owner=owner.key, school_id=owner.school_id,
                            pair_id=owner.pair_id)
        session.add(schedule)
    schedule.filename = PurePath(filename).name[:255]
    schedule.imported_at = utcnow()
    session.flush()
    return schedule


def _write(session: Session, schedules: dict[int, int], source: str, plan: _Plan,
           days: list[Day]) -> None:
    """``schedules``: the schedule id of each main school."""
    for lesson, (spec, _, ends_at) in plan.updates:
        for key, value in _values(spec, ends_at).items():
            setattr(lesson, key, value)
        lesson.schedule_id, lesson.source = schedules[spec.main.school_id], source
        have = {r.classroom_id: r for r in lesson.receivers}
        wanted = [r.id for r in spec.receivers]
        for rid in have.keys() - set(wanted):
            lesson.receivers.remove(have[rid])
        lesson.receivers.extend(LessonReceiver(classroom_id=rid) for rid in wanted
                                if rid not in have)
    session.flush()
    referenced_ids = referenced(session, [lesson.id for lesson in plan.removed])
    for lesson in plan.removed:
        # Checks and alerts keep pointing at a lesson they were about: cancel it instead.
        if lesson.id in referenced_ids:
            lesson.cancelled = True
        else:
            session.delete(lesson)
    _insert(session, schedules, source, plan.new)
    for day in days:
        row = session.scalars(select(CalendarDay).where(
            CalendarDay.day == day.day, CalendarDay.level == day.level,
            CalendarDay.place_id == day.place_id)).first()
        if row is None:
            session.add(CalendarDay(day=day.day, name=day.name, level=day.level,
                                    place_id=day.place_id, runs_weekday=day.runs_weekday))
        else:
            row.runs_weekday = day.runs_weekday
            if day.name != DEFAULT_HOLIDAY_NAME:
                row.name = day.name
    session.flush()


def _insert(session: Session, schedules: dict[int, int], source: str,
            new: list[_Occurrence]) -> None:
    """New lessons and their receivers, a batch per statement rather than an object each
    (and the rows of a batch built only for it)."""
    for at in range(0, len(new), _BATCH):
        batch = new[at:at + _BATCH]
        rows = [{"source": source, "schedule_id": schedules[spec.main.school_id],
                 "main_classroom_id": spec.main.id,
                 "starts_at": starts_at, "edit": "", **_values(spec, ends_at)}
                for spec, starts_at, ends_at in batch]
        ids = session.scalars(insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                              rows).all()
        receivers = [{"lesson_id": lesson_id, "classroom_id": room.id}
                     for lesson_id, (spec, _, _) in zip(ids, batch, strict=True)
                     for room in spec.receivers]
        if receivers:
            session.execute(insert(LessonReceiver), receivers)


def _file_days(parsed: _Parsed, semester: Semester, schools: list[int]) -> list[Day]:
    """The file's (and the semester's) holidays and 调休, for the schedules' schools."""
    closed = {day: DEFAULT_HOLIDAY_NAME for day in semester.holidays} | parsed.holidays
    return [Day(day, name, Level.SCHOOL, school, None)
            for school in schools for day, name in closed.items()] + \
        [Day(day, name, Level.SCHOOL, school, runs)
         for school in schools for day, (runs, name) in parsed.workdays.items()]


def import_timetable(session: Session, data: bytes | BinaryIO, filename: str, *,
                     semester: Semester, school: str = "", pair: str = "",
                     dry_run: bool = False, max_errors: int = MAX_ERRORS,
                     progress: Progress | None = None) -> ImportResult:
    """Import a ``.csv``/``.xlsx`` timetable (its content or a seekable binary file), read
    as a stream, as the schedule of ``school`` or ``pair`` (by default: of each school
    the file's lessons are given by) for ``semester``; the caller commits.

    Raises TimetableError listing the first ``max_errors`` bad rows and how many there
    were; the session is then left untouched, as it is by a ``dry_run``.  ``progress``
    hears the rows read so far.
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
        owners = _owners(session, parsed, school, pair)
        if school or pair:
            for spec in parsed.specs:
                if owners and spec.main.school_id not in owners[0].schools:
                    parsed.errors.append(spec.row.error(
                        "main_school", msg.NOT_OWNERS, owner=owners[0].name,
                        room=f"{spec.main.school.name}/{spec.main.name}"))
        schools = sorted({school for owner in owners for school in owner.schools})
        days = _file_days(parsed, semester, schools)
        calendar = Calendar.load(session, semester.start, semester.end)
        for day in days:
            calendar.add(day)
        occurrences: list[_Occurrence] = []
        slots: list[_Slot] = []
        for spec, when in _expand_all(parsed.specs, semester, calendar, parsed.errors):
            day_slots = _slots(spec, when)
            slots += day_slots
            occurrences.append((spec, day_slots[0].starts_at, day_slots[0].ends_at))
        zone = ZoneInfo("Asia/Shanghai")
        lo = datetime.combine(semester.start, time(), zone).astimezone(UTC) - timedelta(days=1)
        hi = datetime.combine(semester.end, time(), zone).astimezone(UTC) + timedelta(days=2)
        existing = _existing(session, owners, semester, lo, hi)
        if slots:
            replaced = {lesson.id for lesson in existing if not lesson.edit}
            slots += _stored_slots(session, replaced, {s.room.id for s in slots},
                                   min(s.starts_at for s in slots),
                                   max(s.ends_at for s in slots))
        _overlaps(slots, parsed.errors)
        if parsed.errors:
            raise TimetableError(parsed.errors)
        plan = _plan(existing, occurrences)
    rooms = {room.id for spec in parsed.specs for room in (spec.main, *spec.receivers)}
    rooms |= set(session.scalars(select(Classroom.id).where(Classroom.school_id.in_(schools))))
    if not dry_run:
        schedules = {school: schedule.id for owner in owners
                     for schedule in [_write_schedule(session, owner, semester, filename)]
                     for school in owner.schools}
        _write(session, schedules, source, plan, days)
        _store_rows(session, schedules, parsed.specs)
    return ImportResult(source, len(occurrences), len(plan.new), len(plan.updates),
                        plan.unchanged, len(plan.removed),
                        len({*semester.holidays, *parsed.holidays}) + len(parsed.workdays),
                        plan.conflicts, "、".join(owner.name for owner in owners),
                        semester.key, dry_run, tuple(plan.changes()),
                        frozenset(rooms))


def _store_rows(session: Session, schedules: dict[int, int], specs: list[_Spec]) -> None:
    """Keep the file's lesson rows with their schedules, replacing the last import's."""
    ids = sorted(set(schedules.values()))
    session.execute(delete(ScheduleRow).where(ScheduleRow.schedule_id.in_(ids)))
    for at in range(0, len(specs), _BATCH):  # the dicts of one batch at a time
        session.execute(insert(ScheduleRow.metadata.tables["schedule_row"]), [
            {"schedule_id": schedules[spec.main.school_id], "weekday": spec.weekday,
             "day": spec.day, "starts": spec.start, "ends": spec.end, "subject": spec.subject,
             "grade": spec.grade, "teacher": spec.teacher, "mode": spec.mode,
             "main_classroom_id": spec.main.id,
             "receiver_ids": [room.id for room in spec.receivers]}
            for spec in specs[at:at + _BATCH]])
    for schedule_id in ids:
        session.get_one(Schedule, schedule_id).rows_stored = True
    session.flush()


@dataclass(frozen=True)
class Recalendared:
    """What a calendar change did to the schedules already imported."""

    added: int = 0  # lessons laid out anew (a make-up workday)
    changed: int = 0  # lessons brought back (a closure lifted) or otherwise updated
    removed: int = 0  # lessons the calendar no longer gives (cancelled if referenced)
    conflicts: int = 0  # lessons changed by hand: kept as they are


_NO_ROW = RawRow(0, {}, {})


def _spec_of(session: Session, row: ScheduleRow) -> _Spec:
    return _Spec(_NO_ROW, RowKind.WEEKLY if row.weekday is not None else RowKind.ONCE,
                 row.weekday, row.day, row.starts, row.ends, row.subject, row.grade,
                 row.teacher, row.mode, row.main_classroom,
                 [session.get_one(Classroom, rid) for rid in row.receiver_ids])


def recalendar(session: Session, changed: Iterable[Day]) -> Recalendared:
    """Re-lay the imported schedules' lessons on the dates and places of calendar days just
    published or removed (``changed``; the calendar in ``session`` is already the new one),
    with the same expansion as an import: a make-up workday gets the named weekday's
    lessons, a lifted closure gets its lessons back, a new closure's go.  Lessons changed
    by hand are kept, as an import keeps them.  Schedules imported before their rows were
    kept follow at their next import."""
    changed = list(changed)
    if not changed:
        return Recalendared()
    first, last = min(d.day for d in changed), max(d.day for d in changed)
    calendar = Calendar.load(session, first, last)
    totals = [0, 0, 0, 0]
    for schedule in session.scalars(
        select(Schedule).join(Term).where(Schedule.rows_stored.is_(True), Term.start <= last,
                                          Term.end >= first).order_by(Schedule.id)
    ):
        term = schedule.semester
        window = Semester(max(term.start, first), min(term.end, last), name=term.name)
        rows = session.scalars(select(ScheduleRow).where(
            ScheduleRow.schedule_id == schedule.id).options(
            selectinload(ScheduleRow.main_classroom).selectinload(Classroom.school)))
        specs = [_spec_of(session, row) for row in rows]
        # Only schedules a changed day reaches (at a main or a receiving classroom) are
        # re-laid, and those on the changed dates only.
        if not any(place_of(room).covered_by(d.level, d.place_id) for d in changed
                   for spec in specs for room in (spec.main, *spec.receivers)):
            continue
        dates = {d.day for d in changed}
        occurrences: list[_Occurrence] = []
        for spec, when in _expand_all(specs, window, calendar, ErrorLog(1)):
            if when in dates:
                slot = _slots(spec, when)[0]
                occurrences.append((spec, slot.starts_at, slot.ends_at))
        existing = [lesson for lesson in _scheduled(session, schedule.id, first, last)
                    if _planned_day(session, lesson) in dates]
        plan = _plan(existing, occurrences)
        if not (plan.new or plan.updates or plan.removed):
            totals[3] += plan.conflicts
            continue
        ids = {spec.main.school_id: schedule.id for spec in specs}
        _write(session, ids, source_of(schedule.filename), plan, [])
        for at, count in enumerate((len(plan.new), len(plan.updates), len(plan.removed),
                                    plan.conflicts)):
            totals[at] += count
    session.flush()
    return Recalendared(*totals)


def _scheduled(session: Session, schedule_id: int, first: date, last: date) -> list[Lesson]:
    """A schedule's lessons planned around these local dates (a day wider each way, for
    any school's zone), as ``_existing`` loads them."""
    lo = datetime.combine(first - timedelta(days=1), time(), UTC)
    hi = datetime.combine(last + timedelta(days=2), time(), UTC)
    planned = func.coalesce(Lesson.planned_at, Lesson.starts_at)
    return list(session.scalars(
        select(Lesson).where(Lesson.schedule_id == schedule_id, planned >= lo, planned < hi,
                             Lesson.edit.not_in(("added", "moved_away")))
        .options(selectinload(Lesson.receivers).selectinload(LessonReceiver.classroom)
                 .selectinload(Classroom.school),
                 selectinload(Lesson.main_classroom).selectinload(Classroom.school))))


def _planned_day(session: Session, lesson: Lesson) -> date:
    """The local date the schedule put a lesson at (``_key``)."""
    classroom_id, at = _key(lesson)
    return _local(at, session.get_one(Classroom, classroom_id)).date()
