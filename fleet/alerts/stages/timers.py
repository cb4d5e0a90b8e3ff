"""Timers: mute changes are recorded; alerts no stage muted escalate and remind.

Not acknowledged within ``escalate_after`` of when the technicians were told, or still
failing when an affected lesson starts, the county 电教 contacts are told (an
acknowledgement stops reminders and the timed escalation, ThingsBoard-style; a lesson
starting on a broken classroom escalates anyway, because the lesson is then affected
whoever is on it).  A technician no route reached counts as never told: the county is.
While firing and unacknowledged a reminder is owed every ``reminder_interval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.alerts.context import lesson_context
from fleet.alerts.notices import set_notice
from fleet.alerts.render import lesson_phrase
from fleet.alerts.stages.base import Tick
from fleet.db.models import Alert, AlertEvent, AlertState, Lesson
from fleet.notify.delivery import unreached

LIVE: Final = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


def stage(tick: Tick) -> None:
    lost = unreached(tick.session, [a for a in tick.alerts if a.state is AlertState.FIRING
                                    and a.escalation_level == 0])
    for alert in tick.alerts:
        reason = tick.muted.get(alert.id)
        if reason != alert.suppressed_by:
            tick.record(alert, "muted" if reason else "unmuted",
                        reason or "no longer muted / 解除屏蔽")
            alert.suppressed_by = reason
        if reason is not None:
            continue
        if alert.id in lost:
            tick.escalate(alert, lost[alert.id])
        if alert.state in LIVE:
            _timers(tick, alert, tick.lessons.get(alert.classroom_id or 0, []))


def _timers(tick: Tick, alert: Alert, lessons: Sequence[Lesson]) -> None:
    cfg, now = tick.config, tick.now
    if alert.escalation_level == 0:
        after = timedelta(seconds=cfg.escalate_after_s)
        told = (
            _told_at(tick.session, alert)
            if alert.state is AlertState.FIRING and now - alert.started_at >= after
            else None
        )
        if told is not None and now - told >= after:
            minutes = round(cfg.escalate_after_s / 60)
            tick.escalate(alert, f"{minutes} 分钟内无人受理 / not acknowledged within "
                          f"{minutes} min")
            return
        grace = timedelta(seconds=cfg.up_delay(alert.rule))
        lesson = _lesson_at_risk(alert, lessons, grace)
        if lesson is not None:
            alert.lesson_id = alert.lesson_id or lesson
            tick.escalate(alert, _at_risk_why(tick, alert, lesson))
            return
    if alert.state is not AlertState.FIRING or alert.notice_kind is not None:
        return
    if alert.last_notified_at is None:
        # Muted when it fired (a silence, or held outside its lesson window), and no
        # longer: paged now, the lesson now at stake in the text.
        set_notice(alert, "firing", now)
    elif now - alert.last_notified_at >= timedelta(seconds=cfg.reminder_interval_s):
        set_notice(alert, "reminder", now)


def _at_risk_why(tick: Tick, alert: Alert, lesson_id: int) -> str:
    """The escalation's reason, naming the lesson (subject, time, the other end)."""
    horizon = timedelta(hours=tick.config.context_horizon_h)
    tz = alert.labels.get("timezone", tick.config.timezone)
    ctx = lesson_context(tick.session, alert.classroom_id, tick.now, horizon, tz) if (
        alert.classroom_id is not None) else None
    if ctx is None or ctx.lesson_id != lesson_id:
        return f"课程开始时仍有故障 / still failing at the start of lesson #{lesson_id}"
    zh, en = lesson_phrase(ctx)
    return f"课程开始时仍有故障：{zh} / still failing at the start of {en}"


def _told_at(session: Session, alert: Alert) -> datetime | None:
    """When the technicians were first told of this episode: the escalation clock starts
    there, not while a silence or maintenance window kept them uninformed."""
    return session.scalar(
        select(func.min(AlertEvent.at)).where(
            AlertEvent.alert_id == alert.id,
            AlertEvent.kind.in_(("queued", "notified", "unrouted")),
            AlertEvent.at >= alert.started_at,
        )
    )


def _lesson_at_risk(alert: Alert, lessons: Sequence[Lesson], grace: timedelta) -> int | None:
    """A lesson under way in the alert's classroom that started while the fault persisted
    (allowing for the rule's up-delay, which made the ticket fire late)."""
    for lesson in lessons:
        if alert.started_at <= lesson.starts_at + grace:
            return lesson.id
    return None
