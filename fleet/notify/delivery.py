"""Delivery truth: what became of each notification an alert caused, told on the alert.

A notice names its alerts in ``payload["alert_ids"]`` (one message may cover several
alerts of a classroom); its fate is the outbox row's: queued, retrying, merged into a
digest, sent, or failed with the channel's reason, plus the copies its fallback queued.
The alert's history gets one line per final fate, written when the dispatcher records it
(never at queue time), and the alert engine asks here whom an alert actually reached:
a recovery goes only to them, and a person no route reached escalates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db.models import Alert, AlertEvent, Notification, NotificationStatus
from fleet.notify.base import redact
from fleet.notify.digest import DIGEST

__all__ = [
    "Delivery",
    "alert_ids",
    "deliveries",
    "describe",
    "reached",
    "record_fate",
    "unreached",
]

Route = tuple[str, str]  # (channel, target)

_ALIVE = (NotificationStatus.PENDING, NotificationStatus.MERGED, NotificationStatus.SENT)


@dataclass(frozen=True)
class Delivery:
    """One notification as the API and page show it; webhook URLs without their token."""

    id: int
    kind: str
    channel: str
    target: str
    state: str  # queued / retrying / merged / sent / failed
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    error: str | None
    digest_id: int | None
    fallback_of: int | None
    fallbacks: tuple[int, ...]  # the deliveries that carried its message on, when it failed
    alert_ids: tuple[int, ...]


def alert_ids(row: Notification) -> set[int]:
    """The alerts a notification is about."""
    ids = (row.payload or {}).get("alert_ids")
    if ids:
        return {int(i) for i in ids}
    return {row.alert_id} if row.alert_id is not None else set()


def _state(row: Notification) -> str:
    if row.status is NotificationStatus.PENDING:
        return "retrying" if row.attempts > 0 and row.last_error else "queued"
    return row.status.value


def _fallback_of(row: Notification) -> int | None:
    of = (row.payload or {}).get("fallback_of")
    return int(of) if of is not None else None


def _delivery(row: Notification) -> Delivery:
    return Delivery(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        target=redact(row.target),
        state=_state(row),
        attempts=row.attempts,
        created_at=row.created_at,
        sent_at=row.sent_at,
        error=row.last_error,
        digest_id=row.digest_id,
        fallback_of=_fallback_of(row),
        fallbacks=tuple(int(i) for i in (row.payload or {}).get("fell_back_to", [])),
        alert_ids=tuple(sorted(alert_ids(row))),
    )


def describe(rows: Iterable[Notification]) -> list[Delivery]:
    """The rows as deliveries."""
    return [_delivery(row) for row in rows]


def _of_alert(session: Session, alert: Alert, since: datetime | None = None) -> list[Notification]:
    # A grouped notice is filed under the first alert of its classroom: look at the
    # classroom's alerts, then keep the notices that name this one.
    same_room = (
        Alert.classroom_id.is_(None) if alert.classroom_id is None
        else Alert.classroom_id == alert.classroom_id
    )
    query = select(Notification).where(
        Notification.kind != DIGEST,
        Notification.alert_id.in_(select(Alert.id).where(same_room)),
    )
    if since is not None:
        query = query.where(Notification.created_at >= since)
    rows = session.scalars(query.order_by(Notification.id))
    return [r for r in rows if alert.id in alert_ids(r)]


def deliveries(session: Session, alert: Alert) -> list[Delivery]:
    """Every notification about ``alert``, oldest first, with its fate."""
    return describe(_of_alert(session, alert))


def record_fate(session: Session, row: Notification, now: datetime) -> None:
    """Write a notice's final fate (sent, or failed with its reason) into the history of
    each alert it is about."""
    if row.kind == DIGEST:
        return  # the notices it carried are recorded one by one
    where = f"{row.channel} {redact(row.target)}"
    if row.status is NotificationStatus.SENT:
        via = f"（汇总 digest #{row.digest_id}）" if row.digest_id is not None else ""
        kind, text = "sent", f"{row.kind} → {where}: 已送达 sent{via}"
    else:
        kind, text = "delivery_failed", f"{row.kind} → {where}: 送达失败 failed: {row.last_error}"
    for alert_id in sorted(alert_ids(row)):
        if session.get(Alert, alert_id) is not None:
            session.add(AlertEvent(alert_id=alert_id, at=now, kind=kind, text=text[:2000]))


def reached(session: Session, alerts: Sequence[Alert]) -> set[Route]:
    """The routes that delivered a message about this episode of each of ``alerts``
    (its firing, a reminder or an escalation): who knows it broke."""
    got: set[Route] = set()
    for alert in alerts:
        got |= {
            (r.channel, r.target)
            for r in _of_alert(session, alert, alert.started_at)
            if r.status is NotificationStatus.SENT and r.kind != "resolved"
        }
    return got


def _root(session: Session, row: Notification) -> Notification:
    """The notice a fallback copy was made from (copies carry no fallback of their own)."""
    seen = {row.id}
    while (of := _fallback_of(row)) is not None and of not in seen:
        original = session.get(Notification, of)
        if original is None:
            break
        seen.add(of)
        row = original
    return row


def unreached(session: Session, alerts: Sequence[Alert]) -> dict[int, str]:
    """For each of ``alerts`` that a notice of this episode could reach by none of its
    routes (the person's own, then the fallbacks: every one failed), why."""
    if not alerts:
        return {}
    by_id = {a.id: a for a in alerts}
    failed = session.scalars(
        select(Notification)
        .where(
            Notification.status == NotificationStatus.FAILED,
            Notification.kind.not_in((DIGEST, "resolved")),
            # A generic webhook has no person behind it to escalate for.
            Notification.channel != "webhook",
            Notification.created_at >= min(a.started_at for a in alerts),
        )
        .order_by(Notification.id)
    ).all()
    found: dict[int, str] = {}
    episodes: dict[int, list[Notification]] = {}  # each alert's notices, read once
    for row in failed:
        mine = [
            by_id[i] for i in alert_ids(row)
            if i in by_id and i not in found and row.created_at >= by_id[i].started_at
        ]
        if not mine:
            continue
        root = _root(session, row)
        routes = {(root.channel, root.target)} | {
            (str(f["channel"]), str(f["target"])) for f in (root.payload or {}).get("fallback", [])
        }
        for alert in mine:
            alive = any(
                (r.channel, r.target) in routes and r.status in _ALIVE
                for r in episodes.setdefault(
                    alert.id, _of_alert(session, alert, alert.started_at))
            )
            if not alive:
                tried = ", ".join(f"{c} {redact(t)}" for c, t in sorted(routes))
                found[alert.id] = (
                    f"所有渠道均送达失败 / no route reached the recipient ({tried}): "
                    f"{root.last_error or row.last_error}"
                )[:1000]
    return found
