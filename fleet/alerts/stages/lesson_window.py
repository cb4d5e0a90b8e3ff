"""When a fault matters: the lesson windows of the timetable, as one mute among the others.

A device's lesson window opens at its first pre-class check of a lesson (the checks'
``lead_minutes`` before the start plus its stable place in ``spread_minutes``, exactly
when the checks scheduler sends it) and closes when the lesson ends; its check period
ends at the lesson's start.  A rule's ``when`` (:meth:`AlertConfig.matters`) says where
its faults are paged: ``always``, in the lesson window (``lessons``) or in the check
period (``checks``).  Outside, :class:`LessonWindows` mutes the ticket like a
maintenance window: it is recorded, shown (``suppressed_by``) and reported, and owes no
page; if it is still open when the next window opens, the engine, finding it no longer
muted and never told, pages it then, with that lesson in the text.  In a window the
timers are the lesson ones (``lesson_group_wait_s``, ``lesson_up_delays``); elsewhere
grouping and up-delays damp noise as before.

The stage (after the silences): adds the mute, and tells the later stages which
tickets' devices are in a lesson window (``tick.in_lesson``: the group stage's wait).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet.alerts.config import ALWAYS, CHECKS, AlertConfig
from fleet.alerts.stages.base import Tick
from fleet.checks.config import CheckConfig
from fleet.checks.scheduler import spread_offset
from fleet.db.models import Lesson
from fleet.inventory import checked_classrooms

__all__ = ["HELD", "LessonWindows", "Near", "lessons_near", "stage"]

#: The ``suppressed_by`` of a ticket held outside its window (a prefix: the rule's "when"
#: follows).
HELD: Final = "课外时段，暂不通知 / outside the lessons it matters in"


@dataclass(frozen=True)
class Near:
    """A lesson whose window may be open now or soon in one classroom."""

    lesson_id: int
    starts_at: datetime
    ends_at: datetime


def lessons_near(session: Session, now: datetime, ahead: timedelta) -> dict[int, list[Near]]:
    """Classroom id -> its lessons not over at ``now`` and starting within ``ahead``.

    The one timetable query of this module (the classrooms a lesson's checks cover,
    cancelled lessons left out), so that a change of how lessons are stored meets it once.
    """
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.cancelled.is_(False), Lesson.ends_at > now,
               Lesson.starts_at <= now + ahead)
        .options(selectinload(Lesson.receivers))
        .order_by(Lesson.starts_at)
    )
    rooms: dict[int, list[Near]] = {}
    for lesson in lessons:
        for room in checked_classrooms(lesson):
            rooms.setdefault(room.id, []).append(Near(lesson.id, lesson.starts_at,
                                                      lesson.ends_at))
    return rooms


@dataclass(frozen=True)
class LessonWindows:
    """The lesson windows around ``at``: a Muter, and the timers' in-lesson test."""

    config: AlertConfig
    checks: CheckConfig
    lessons: Mapping[int, Sequence[Near]]

    @classmethod
    def load(cls, session: Session, now: datetime, config: AlertConfig,
             checks: CheckConfig) -> LessonWindows:
        ahead = timedelta(minutes=checks.lead_minutes)
        return cls(config, checks, lessons_near(session, now, ahead))

    def first_check(self, lesson: Near, device_id: str) -> datetime:
        """When the checks scheduler sends ``device_id`` its first check of ``lesson``."""
        lead = timedelta(minutes=self.checks.lead_minutes)
        spread = timedelta(minutes=self.checks.spread_minutes)
        return lesson.starts_at - lead + spread_offset(lesson.lesson_id, device_id, spread)

    def current(self, classroom_id: int | None, device_id: str, now: datetime,
                until_start: bool = False) -> Near | None:
        """The lesson whose window (or check period, ``until_start``) holds the device."""
        for lesson in self.lessons.get(classroom_id or 0, ()):
            closes = lesson.starts_at if until_start else lesson.ends_at
            if self.first_check(lesson, device_id) <= now < closes:
                return lesson
        return None

    def in_lesson(self, labels: Mapping[str, str], now: datetime) -> bool:
        room = labels.get("classroom_id")
        return room is not None and room.isdigit() and self.current(
            int(room), labels.get("device_id", ""), now) is not None

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        when = self.config.matters(labels.get("rule", ""))
        if when == ALWAYS:
            return None
        room = labels.get("classroom_id")
        if room is not None and room.isdigit() and self.current(
            int(room), labels.get("device_id", ""), now, until_start=when == CHECKS
        ) is not None:
            return None
        return f"{HELD} ({when})"


def stage(tick: Tick) -> None:
    tick.mute(tick.windows)
    tick.in_lesson = lambda alert: tick.windows.in_lesson(alert.labels, tick.now)
