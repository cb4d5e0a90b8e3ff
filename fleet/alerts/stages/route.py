"""Route: each group's message (with the lesson now at stake) and who gets it.

The school's technicians first, the county's 电教 contacts once escalated, robots and
webhooks as configured.  A recovery goes only to the routes a message about the fault
actually reached: "已恢复" to someone who never heard it broke is noise at best, and
hides that their alert was lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from fleet.alerts.notices import refresh_summary
from fleet.alerts.recipients import Recipient, recipients
from fleet.alerts.render import AlertLine, render
from fleet.alerts.stages.base import Group, Outgoing, Tick
from fleet.db.models import Alert, Classroom
from fleet.notify.delivery import reached
from fleet.notify.digest import SEVERITY_RANK


def stage(tick: Tick) -> None:
    for group in tick.groups:
        tick.outgoing.append(_route(tick, group))


def _route(tick: Tick, group: Group) -> Outgoing:
    session, config, now, alerts = tick.session, tick.config, tick.now, group.alerts
    lessons = [c for a in alerts if (c := refresh_summary(session, a, config, now)) is not None]
    first = alerts[0]
    school = first.labels.get("school_id")
    level = max(a.escalation_level for a in alerts)
    tz = str(first.labels.get("timezone", config.timezone))
    link = f"{config.base_url.rstrip('/')}/#alert-{first.id}" if config.base_url else ""
    message = render(group.kind, _where(session, group.classroom_id, first.device_id),
                     [_line(a) for a in alerts], tz, link)
    to = recipients(session, int(school) if school else None, level, config.webhooks)
    skipped: list[Recipient] = []
    if group.kind == "resolved":
        to, skipped = _who_knew(session, alerts, to)
    # What a digest needs to order and link this notice among others to the same target.
    about: dict[str, object] = {
        "alert_ids": [a.id for a in alerts],
        "classroom_id": group.classroom_id,
        "severity": min((a.severity for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 9)),
        "lesson_at": min(c.starts_at for c in lessons).isoformat() if lessons else None,
    }
    if config.base_url:
        about["alerts_url"] = f"{config.base_url.rstrip('/')}/#alerts"
    return Outgoing(group, message, list(to), skipped, about)


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
        rule=alert.rule,
        ack_by=alert.acknowledged_by,
        ack_comment=alert.ack_comment,
        reopen_count=alert.reopen_count,
    )


def _who_knew(
    session: Session, alerts: Sequence[Alert], to: Sequence[Recipient]
) -> tuple[list[Recipient], list[Recipient]]:
    """Split a recovery's recipients into those a message about the fault reached and
    the rest."""
    got = reached(session, alerts)
    keep = [
        Recipient(r.channel, r.target, r.payload,
                  tuple(f for f in r.fallback if (f.channel, f.target) in got))
        for r in to
        if (r.channel, r.target) in got
    ]
    return keep, [r for r in to if (r.channel, r.target) not in got]
