"""Reports per classroom, school, pair (捆绑考核) and county over a range of local dates.

For each unit, over lessons starting on the local dates ``start``..``end``:

* ``lessons_scheduled``: lessons (not cancelled) that use one of the unit's classrooms,
  as main or receiving classroom.  A pair's unit is the town school's and every member
  school's classrooms together, so a pair's lesson counts once.
* ``lessons_ready``: of those, lessons that were ready at their start: the lesson's
  readiness (``fleet.checks.readiness``) evaluated as of the start instant is ``ready``
  or ``warn`` — every enabled device of every checked classroom (a recorded lesson
  checks only its receivers) had, for this lesson, a latest check answered by then with
  pass or warn.  A check still out, failed, unanswered, or answered late is not ready.
* ``alerts``: alerts of the unit's classrooms (or their devices) that fired in the range
  (pending ones, still inside their up-delay, are not alerts yet; a reopened alert counts
  by its latest firing); ``mtta_s`` / ``mttr_s`` are the mean seconds from firing to
  acknowledgement and to resolution over those that were acknowledged / resolved.
* ``availability``: the fraction of device-time online over the elapsed part of the
  range (up to ``now``), from the ``device_offline`` alerts: each alert's history
  (fired/reopened → resolved events; without history its started_at → resolved_at, still
  open → now) gives the offline intervals, merged per device and clipped to the range.
  Offline spells shorter than the alert rule's up-delay are not counted, and nor is time
  before the device was in the inventory (there is no record of it).  None when the unit
  has no enabled device or no time has elapsed.

The CSV export goes through ``fleet.exports`` (UTF-8 with a BOM for Excel, text cells
neutralised against formula injection).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from fleet.checks.readiness import ReadinessState, lessons_readiness
from fleet.db.models import (
    DEFAULT_TZ,
    Alert,
    Classroom,
    County,
    Device,
    Lesson,
    Pair,
    Schedule,
    School,
)
from fleet.exports import Cell, csv_document

__all__ = ["Level", "ReportRow", "build_report", "local_day_bounds", "report_csv"]

OFFLINE_RULE = "device_offline"
READY_STATES = frozenset({ReadinessState.READY, ReadinessState.WARN})
_OFFLINE_STARTS = frozenset({"fired", "reopened"})
_OFFLINE_ENDS = frozenset({"resolved"})


class Level(StrEnum):
    CLASSROOM = "classroom"
    SCHOOL = "school"
    PAIR = "pair"
    COUNTY = "county"


@dataclass(frozen=True)
class ReportRow:
    level: str
    unit_id: int
    name: str
    start: date
    end: date
    lessons_scheduled: int
    lessons_ready: int
    alerts: int
    mtta_s: float | None
    mttr_s: float | None
    availability: float | None


@dataclass(frozen=True)
class _Unit:
    id: int
    name: str
    classrooms: frozenset[int]


def _units(session: Session, level: Level, ids: Collection[int] | None) -> list[_Unit]:
    rooms = session.execute(select(Classroom.id, Classroom.school_id)).all()
    by_school: dict[int, set[int]] = defaultdict(set)
    for room_id, school_id in rooms:
        by_school[school_id].add(room_id)
    units: list[_Unit] = []
    if level is Level.CLASSROOM:
        rooms_query = select(Classroom).order_by(Classroom.id).options(joinedload(Classroom.school))
        for room in session.scalars(rooms_query):
            units.append(_Unit(room.id, f"{room.school.name} {room.name}", frozenset({room.id})))
    elif level is Level.SCHOOL:
        for school in session.scalars(select(School).order_by(School.id)):
            units.append(_Unit(school.id, school.name, frozenset(by_school[school.id])))
    elif level is Level.PAIR:
        pairs_query = select(Pair).order_by(Pair.id).options(selectinload(Pair.members))
        for pair in session.scalars(pairs_query):
            schools = {pair.town_school_id, *(m.school_id for m in pair.members)}
            members = frozenset(r for s in schools for r in by_school[s])
            units.append(_Unit(pair.id, pair.name, members))
    else:
        county_of = {s: c for s, c in session.execute(select(School.id, School.county_id))}
        for county in session.scalars(select(County).order_by(County.id)):
            members = frozenset(
                r for s, c in county_of.items() if c == county.id for r in by_school[s]
            )
            units.append(_Unit(county.id, county.name, members))
    return [u for u in units if ids is None or u.id in ids]


def _lesson_rooms(lesson: Lesson) -> frozenset[int]:
    return frozenset({lesson.main_classroom_id, *(r.classroom_id for r in lesson.receivers)})


def _ready_lessons(session: Session, lessons: list[Lesson]) -> set[int]:
    """Lessons whose readiness as of their start was ready (or ready with warnings)."""
    by_start: dict[datetime, list[Lesson]] = defaultdict(list)
    for lesson in lessons:
        by_start[lesson.starts_at].append(lesson)
    ready: set[int] = set()
    for start, group in by_start.items():
        for lesson_id, readiness in lessons_readiness(session, group, start).items():
            if readiness.state in READY_STATES:
                ready.add(lesson_id)
    return ready


def _merge(intervals: Iterable[tuple[datetime, datetime]]) -> float:
    """Total seconds covered by possibly overlapping intervals."""
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for lo, hi in sorted(intervals):
        if current is None or lo > current[1]:
            if current is not None:
                total += (current[1] - current[0]).total_seconds()
            current = (lo, hi)
        else:
            current = (current[0], max(current[1], hi))
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


def _offline_intervals(alert: Alert, now: datetime) -> list[tuple[datetime, datetime]]:
    spans: list[tuple[datetime, datetime]] = []
    opened: datetime | None = None
    for event in alert.events:
        if event.kind in _OFFLINE_STARTS and opened is None:
            opened = event.at
        elif event.kind in _OFFLINE_ENDS and opened is not None:
            spans.append((opened, event.at))
            opened = None
    if not spans and opened is None:  # no usable history: the alert's own bounds
        return [(alert.started_at, alert.resolved_at or now)]
    if opened is not None:
        resolved = alert.resolved_at
        spans.append((opened, resolved if resolved is not None and resolved > opened else now))
    return spans


def _offline_seconds(
    session: Session, lo: datetime, hi: datetime, now: datetime
) -> dict[str, float]:
    query = (
        select(Alert)
        .where(
            Alert.rule == OFFLINE_RULE,
            Alert.device_id.is_not(None),
            Alert.started_at < hi,
            or_(Alert.resolved_at.is_(None), Alert.resolved_at > lo),
        )
        .options(selectinload(Alert.events))
    )
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for alert in session.scalars(query):
        assert alert.device_id is not None
        for start, stop in _offline_intervals(alert, now):
            start, stop = max(start, lo), min(stop, hi)
            if stop > start:
                spans[alert.device_id].append((start, stop))
    return {device: _merge(items) for device, items in spans.items()}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def local_day_bounds(start: date, end: date, tz: str) -> tuple[datetime, datetime]:
    """The UTC instants bounding the local dates ``start``..``end`` (inclusive)."""
    zone = ZoneInfo(tz)
    lo = datetime.combine(start, datetime.min.time(), zone).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return lo, hi


def build_report(
    session: Session,
    level: Level | str,
    start: date,
    end: date,
    *,
    now: datetime,
    unit_ids: Collection[int] | None = None,
    classroom_ids: Collection[int] | None = None,
    tz: str = DEFAULT_TZ,
    semester_id: int | None = None,
) -> list[ReportRow]:
    """One row per unit of ``level`` (restricted to ``unit_ids`` if given).

    ``semester_id`` counts only that semester's lessons: while next semester's schedule
    is imported alongside, or after a semester ended, each keeps its own figures.

    ``classroom_ids`` narrows every unit to those classrooms: a technician's county or
    pair row then counts their own classrooms' lessons, alerts and devices, not the
    other schools' they may not see.
    """
    level = Level(level)
    lo, hi = local_day_bounds(start, end, tz)
    units = _units(session, level, unit_ids)
    if classroom_ids is not None:
        allowed = frozenset(classroom_ids)
        units = [replace(unit, classrooms=unit.classrooms & allowed) for unit in units]
    wanted = frozenset(room for unit in units for room in unit.classrooms)

    query = (
        select(Lesson)
        .where(Lesson.starts_at >= lo, Lesson.starts_at < hi, Lesson.cancelled.is_(False))
        .options(selectinload(Lesson.receivers))
    )
    if semester_id is not None:
        query = query.where(Lesson.schedule_id.in_(
            select(Schedule.id).where(Schedule.semester_id == semester_id)))
    # Readiness is the costly part: only for the lessons of the units asked for.
    lessons = [lesson for lesson in session.scalars(query) if _lesson_rooms(lesson) & wanted]
    ready = _ready_lessons(session, lessons)
    rooms_of = {lesson.id: _lesson_rooms(lesson) for lesson in lessons}

    room_of_device = {d: r for d, r in session.execute(select(Device.id, Device.classroom_id))}
    enabled = set(session.scalars(select(Device.id).where(Device.enabled.is_(True))))
    alerts = list(
        session.scalars(select(Alert).where(Alert.started_at >= lo, Alert.started_at < hi))
    )
    elapsed_end = min(hi, now)
    elapsed = (elapsed_end - lo).total_seconds()
    offline = _offline_seconds(session, lo, elapsed_end, now) if elapsed > 0 else {}

    rows: list[ReportRow] = []
    for unit in units:
        unit_lessons = [lid for lid, rooms in rooms_of.items() if rooms & unit.classrooms]
        unit_alerts = [
            a
            for a in alerts
            if (a.classroom_id or room_of_device.get(a.device_id or "", -1)) in unit.classrooms
        ]
        acked = [
            (a.acknowledged_at - a.started_at).total_seconds()
            for a in unit_alerts
            if a.acknowledged_at is not None
        ]
        resolved = [
            (a.resolved_at - a.started_at).total_seconds()
            for a in unit_alerts
            if a.resolved_at is not None
        ]
        devices = [d for d in enabled if room_of_device[d] in unit.classrooms]
        availability = None
        if devices and elapsed > 0:
            down = sum(offline.get(d, 0.0) for d in devices)
            availability = 1.0 - down / (elapsed * len(devices))
        rows.append(
            ReportRow(
                level=level.value,
                unit_id=unit.id,
                name=unit.name,
                start=start,
                end=end,
                lessons_scheduled=len(unit_lessons),
                lessons_ready=sum(1 for lid in unit_lessons if lid in ready),
                alerts=len(unit_alerts),
                mtta_s=_mean(acked),
                mttr_s=_mean(resolved),
                availability=availability,
            )
        )
    return rows


_HEADERS = {
    "level": "级别 level",
    "unit_id": "编号 id",
    "name": "名称 name",
    "start": "开始日期 from",
    "end": "结束日期 to",
    "lessons_scheduled": "排课节数 lessons scheduled",
    "lessons_ready": "课前就绪节数 lessons ready at start",
    "alerts": "告警数 alerts",
    "mtta_s": "平均确认时间(秒) mean time to acknowledge (s)",
    "mttr_s": "平均恢复时间(秒) mean time to resolve (s)",
    "availability": "设备在线率 device availability",
}


def _line(row: ReportRow) -> list[Cell]:
    data = asdict(row)
    return [round(v, 4) if isinstance(v := data[key], float) else v for key in _HEADERS]


def report_csv(rows: Iterable[ReportRow]) -> bytes:
    """One line per row; names are text (neutralised), figures are numbers."""
    return csv_document(list(_HEADERS.values()), (_line(row) for row in rows))
