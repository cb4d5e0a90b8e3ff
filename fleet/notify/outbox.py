"""The outbox: notifications are rows first, deliveries second.

The alert engine enqueues inside its own transaction, so a message exists exactly when
the alert change that caused it was committed; the dispatcher delivers later and records
the fate of each row.  Failed rows stay in the table and are listed here for the API and
the web page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db.models import Notification, NotificationStatus

__all__ = ["CHANNELS", "enqueue", "failed_notifications", "requeue"]

CHANNELS = ("email", "dingtalk", "wecom", "webhook")


def enqueue(
    session: Session,
    *,
    alert_id: int | None,
    channel: str,
    target: str,
    kind: str,
    subject: str,
    body: str,
    payload: dict[str, Any] | None = None,
    now: datetime,
) -> Notification:
    """Add a pending notification, due at ``now``; the caller's transaction commits it."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown notification channel {channel!r} (known: {', '.join(CHANNELS)})")
    if not target.strip():
        raise ValueError(f"empty target for a {channel} notification")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    row = Notification(
        alert_id=alert_id,
        channel=channel,
        target=target.strip(),
        kind=kind,
        subject=subject,
        body=body,
        payload=dict(payload or {}),
        status=NotificationStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def failed_notifications(
    session: Session, since: datetime | None = None, limit: int = 100
) -> list[Notification]:
    """Notifications given up on, newest first; ``since`` filters on when they were created."""
    query = select(Notification).where(Notification.status == NotificationStatus.FAILED)
    if since is not None:
        query = query.where(Notification.created_at >= since)
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list(session.scalars(query))


def requeue(session: Session, notification_id: int, now: datetime) -> Notification:
    """Give a failed notification a fresh set of attempts (after fixing a webhook, say).

    A failed digest is not requeued itself: its notices failed with it and are requeued
    one by one (they may travel in a new digest)."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise LookupError(f"no notification {notification_id}")
    if row.status != NotificationStatus.FAILED:
        raise ValueError(f"notification {notification_id} is {row.status.value}, not failed")
    if row.kind == "digest":
        raise ValueError(
            f"notification {notification_id} is a digest: requeue the notices it carried"
        )
    row.status = NotificationStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.digest_id = None
    return row
