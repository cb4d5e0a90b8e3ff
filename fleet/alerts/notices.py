"""The notification stage: one message per classroom and kind, after group_wait.

The life-cycle only marks an alert with the notice it owes (``notice_kind`` since
``notice_since``).  Here notices of one classroom and kind are gathered once the oldest
has waited ``group_wait`` (Alertmanager's group_wait), muted ones are dropped with their
reason recorded, and one text per recipient goes to the outbox (the history says "queued
to N"; each delivery's fate is written there when the dispatcher knows it).  A recovery
goes only to the routes a message about the fault actually reached, so a fault nobody
heard of (inhibited, say, or its messages all failed) gets none; for those told, neither
inhibition nor a silence holds it back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.alerts.config import AlertConfig
from fleet.alerts.context import LessonContext, lesson_context
from fleet.alerts.mute import Inhibition, Muter, muted_by
from fleet.alerts.recipients import Recipient, recipients
from fleet.alerts.render import AlertLine, render, summary
from fleet.db.models import Alert, Classroom
from fleet.notify.base import redact
from fleet.notify.delivery import reached
from fleet.notify.digest import SEVERITY_RANK

__all__ = ["Enqueue", "flush_notices", "refresh_summary", "set_notice"]


#: Notices that end a ticket: never hidden from those told it began.
_ENDINGS = frozenset({"resolved", "closed"})

#: ``fleet.notify.outbox.enqueue`` or a stand-in with its signature.
Enqueue = Callable[..., object]


def set_notice(alert: Alert, kind: str, now: datetime) -> None:
    """Owe ``kind`` for this alert; a later notice replaces an earlier unsent one."""
    if kind in _ENDINGS and alert.notice_kind == "firing" and alert.last_notified_at is None:
        # Fired and recovered within one group_wait: nobody needs either message.
        alert.notice_kind = alert.notice_since = None
        return
    if alert.notice_kind is None:
        alert.notice_since = now
    alert.notice_kind = kind


def refresh_summary(
    session: Session, alert: Alert, config: AlertConfig, now: datetime
) -> LessonContext | None:
    """Rewrite the ticket's one-line texts with the lesson now at stake; that lesson."""
    ctx = None
    if alert.classroom_id is not None:
        tz = alert.labels.get("timezone", config.timezone)
        horizon = timedelta(hours=config.context_horizon_h)
        ctx = lesson_context(session, alert.classroom_id, now, horizon, tz)
    detail = (str(alert.details.get("message_zh", "")), str(alert.details.get("message_en", "")))
    alert.summary_zh, alert.summary_en = summary(alert.rule, alert.entity, ctx, detail)
    return ctx


def _where(session: Session, classroom_id: int | None, device_id: str | None) -> str:
    room = session.get(Classroom, classroom_id) if classroom_id is not None else None
    if room is None:
        return f"设备 {device_id}"
    return f"{room.school.name} {room.name}"


def _line(alert: Alert) -> AlertLine:
    return AlertLine(
        alert_id=alert.id,
        device_id=alert.device_id or "",
        summary_zh=alert.summary_zh,
        summary_en=alert.summary_en,
        since=alert.started_at,
        ack_by=alert.acknowledged_by,
        ack_comment=alert.ack_comment,
        reopen_count=alert.reopen_count,
    )


def _hold_reason(alert: Alert, kind: str, muters: Sequence[Muter], now: datetime) -> str | None:
    if kind not in _ENDINGS:
        return alert.suppressed_by
    if alert.last_notified_at is not None:
        return None  # they were told it broke: always tell them it is fixed
    windows = [m for m in muters if not isinstance(m, Inhibition)]
    return muted_by(windows, alert.labels, now)


def flush_notices(
    session: Session,
    config: AlertConfig,
    muters: Sequence[Muter],
    enqueue: Enqueue,
    now: datetime,
    sent: Counter[tuple[str, str]],
    record: Callable[[Alert, str, str], None],
) -> None:
    """Send every group whose oldest notice has waited ``group_wait``."""
    owed = session.scalars(
        select(Alert).where(Alert.notice_kind.is_not(None)).order_by(Alert.id)
    ).all()
    groups: dict[tuple[int | None, str], list[Alert]] = defaultdict(list)
    for alert in owed:
        groups[(alert.classroom_id, str(alert.notice_kind))].append(alert)
    wait = timedelta(seconds=config.group_wait_s)
    for (classroom_id, kind), alerts in groups.items():
        if min(a.notice_since or now for a in alerts) + wait > now:
            continue
        going = []
        for alert in alerts:
            alert.notice_kind = alert.notice_since = None
            reason = _hold_reason(alert, kind, muters, now)
            if reason:
                record(alert, "suppressed", f"{kind}: {reason}")
            else:
                going.append(alert)
        if going:
            _send(session, config, enqueue, now, sent, record, classroom_id, kind, going)


def _send(
    session: Session,
    config: AlertConfig,
    enqueue: Enqueue,
    now: datetime,
    sent: Counter[tuple[str, str]],
    record: Callable[[Alert, str, str], None],
    classroom_id: int | None,
    kind: str,
    alerts: list[Alert],
) -> None:
    lessons = [c for a in alerts if (c := refresh_summary(session, a, config, now)) is not None]
    first = alerts[0]
    school = first.labels.get("school_id")
    level = max(a.escalation_level for a in alerts)
    tz = str(first.labels.get("timezone", config.timezone))
    link = f"{config.base_url.rstrip('/')}/#alert-{first.id}" if config.base_url else ""
    message = render(kind, _where(session, classroom_id, first.device_id),
                     [_line(a) for a in alerts], tz, link)
    to = recipients(session, int(school) if school else None, level, config.webhooks)
    skipped: list[Recipient] = []
    if kind == "resolved":
        to, skipped = _who_knew(session, alerts, to)
    ids = [a.id for a in alerts]
    # What a digest needs to order and link this notice among others to the same target.
    about: dict[str, object] = {
        "alert_ids": ids,
        "classroom_id": classroom_id,
        "severity": min((a.severity for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 9)),
        "lesson_at": min(c.starts_at for c in lessons).isoformat() if lessons else None,
    }
    if config.base_url:
        about["alerts_url"] = f"{config.base_url.rstrip('/')}/#alerts"
    for r in to:
        enqueue(
            session,
            alert_id=first.id,
            channel=r.channel,
            target=r.target,
            kind=kind,
            subject=message.subject,
            body=message.body,
            payload={**r.payload, **about, "fallback": [f.route() for f in r.fallback]},
            now=now,
        )
        sent[(kind, r.channel)] += 1
    for alert in alerts:
        # Also when nobody is configured: reminders then retry, and the page shows why.
        alert.last_notified_at = now
        if skipped:
            names = ", ".join(f"{r.channel} {redact(r.target)}" for r in skipped)
            record(alert, "recovery_skipped",
                   f"{kind}: 未收到告警者不发恢复通知 / not sent to those the alert never "
                   f"reached: {names}")
        if to:
            names = ", ".join(f"{r.channel} {redact(r.target)}" for r in to)
            record(alert, "queued", f"{kind} → 已排队 queued to {len(to)}: {names}")
        elif not skipped:
            record(alert, "unrouted", f"{kind}: no technician, robot or webhook configured")


def _who_knew(
    session: Session, alerts: Sequence[Alert], to: Sequence[Recipient]
) -> tuple[list[Recipient], list[Recipient]]:
    """Split a recovery's recipients into those a message about the fault reached and
    the rest: "已恢复" to someone who never heard it broke is noise at best, and hides
    that their alert was lost."""
    got = reached(session, alerts)
    keep = [
        Recipient(r.channel, r.target, r.payload,
                  tuple(f for f in r.fallback if (f.channel, f.target) in got))
        for r in to
        if (r.channel, r.target) in got
    ]
    return keep, [r for r in to if (r.channel, r.target) not in got]

