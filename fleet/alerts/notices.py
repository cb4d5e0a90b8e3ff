"""Notices owed: the life-cycle marks an alert with the notice it owes (``notice_kind``
since ``notice_since``); the stages of :mod:`fleet.alerts.pipeline` send it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.orm import Session

from fleet.alerts.config import AlertConfig
from fleet.alerts.context import LessonContext, lesson_context
from fleet.alerts.render import summary
from fleet.db.models import Alert, Classroom

__all__ = ["ENDINGS", "Enqueue", "refresh_summary", "set_notice"]


#: Notices that end a ticket: never hidden from those told it began.
ENDINGS: Final = frozenset({"resolved", "closed"})

#: ``fleet.notify.outbox.enqueue`` or a stand-in with its signature.
Enqueue = Callable[..., object]


def set_notice(alert: Alert, kind: str, now: datetime) -> None:
    """Owe ``kind`` for this alert; a later notice replaces an earlier unsent one."""
    if kind in ENDINGS and alert.notice_kind == "firing" and alert.last_notified_at is None:
        # Fired and recovered within one group_wait: nobody needs either message.
        alert.notice_kind = alert.notice_since = None
        return
    if alert.notice_kind is None:
        alert.notice_since = now
    alert.notice_kind = kind


def refresh_summary(
    session: Session, alert: Alert, config: AlertConfig, now: datetime
) -> LessonContext | None:
    """Rewrite the ticket's one-line texts (where, what, the lesson now at stake); that
    lesson."""
    ctx = None
    if alert.classroom_id is not None:
        tz = alert.labels.get("timezone", config.timezone)
        horizon = timedelta(hours=config.context_horizon_h)
        ctx = lesson_context(session, alert.classroom_id, now, horizon, tz)
    detail = (str(alert.details.get("message_zh", "")), str(alert.details.get("message_en", "")))
    room = session.get(Classroom, alert.classroom_id) if alert.classroom_id is not None else None
    place = f"{room.school.name} {room.name}" if room is not None else ""
    alert.summary_zh, alert.summary_en = summary(alert.rule, alert.entity, ctx, detail,
                                                 (place, place))
    return ctx
