"""When a disruptive action would hurt a lesson: the classroom's busy lesson, in words.

Meeting-room fleets refuse restarts while a room is in use (Teams Rooms Pro, Zoom Device
Management); a classroom is also busy during the pre-class lead window, when its check
runs and the teacher is setting up.  A check is disruptive inside the lesson itself: it
opens the cameras and microphones and fills the uplink when the agent does not know the
lesson (an agent that does keeps it passive, see agent.quiet).  In the lead window it
stays allowed: re-running the check is how a technician sees a fix take effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleet.actions.outcomes import ActionRefused, RefusalCode
from fleet.db.models import Lesson, LessonReceiver

__all__ = ["busy_lesson", "busy_refusal", "refused_within"]

#: Restarts are refused from the lead window on; a check only inside the lesson.
_RESTARTS = frozenset({"reboot", "restart-service"})


def refused_within(name: str, lead: timedelta) -> timedelta | None:
    """How long before a lesson ``name`` is refused unless forced (None: never)."""
    if name in _RESTARTS:
        return lead
    if name == "run-check":
        return timedelta(0)
    return None


def busy_lesson(
    session: Session, classroom_id: int, now: datetime, lead: timedelta
) -> Lesson | None:
    """The earliest lesson of the classroom in progress or starting within ``lead``."""
    as_receiver = select(LessonReceiver.lesson_id).where(
        LessonReceiver.classroom_id == classroom_id
    )
    query = (
        select(Lesson)
        .where(
            Lesson.cancelled.is_(False),
            Lesson.starts_at <= now + lead,
            Lesson.ends_at > now,
            or_(Lesson.main_classroom_id == classroom_id, Lesson.id.in_(as_receiver)),
        )
        .order_by(Lesson.starts_at)
        .limit(1)
    )
    return session.scalars(query).first()


def busy_refusal(lesson: Lesson, now: datetime, lead: timedelta, tz: str) -> ActionRefused:
    zone = ZoneInfo(tz)
    start = lesson.starts_at.astimezone(zone).strftime("%H:%M")
    end = lesson.ends_at.astimezone(zone).strftime("%H:%M")
    name_zh = f"{lesson.grade}{lesson.subject}"
    name_en = f"{lesson.grade} {lesson.subject}".strip()
    force_zh = "如确需操作，请强制执行并填写原因。"
    force_en = "To act anyway, force it and give a reason."
    if lesson.starts_at <= now:
        return ActionRefused(
            RefusalCode.IN_LESSON,
            f"教室正在上同步课堂：{name_zh}（{start}–{end}）。{force_zh}",
            f"The classroom is in a synchronous lesson: {name_en} ({start}–{end}). {force_en}",
        )
    minutes = round(lead.total_seconds() / 60)
    return ActionRefused(
        RefusalCode.LEAD_WINDOW,
        f"同步课堂{name_zh}将于{start}开始，课前{minutes}分钟内不重启设备。{force_zh}",
        f"The lesson {name_en} starts at {start}; no restarts within {minutes} min "
        f"before a lesson. {force_en}",
    )
