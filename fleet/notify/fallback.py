"""A notice its target keeps refusing goes to the other channels of the same people.

The routes come with the notice (``payload["fallback"]``, chosen by the alert engine's
recipients).  A route that already carries the same message (same alert, kind, subject
and body, queued with or after the refused one, not failed) is not sent twice; every
other route gets a copy of the message, with no further fallback, so nothing loops.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db.models import Notification, NotificationStatus
from fleet.notify.base import redact
from fleet.notify.outbox import enqueue

__all__ = ["fall_back"]

_NOT_COPIED = frozenset({"fallback", "fell_back_to", "secret", "at_mobiles"})


def fall_back(session: Session, row: Notification, now: datetime) -> list[str]:
    """Queue ``row``'s message on its fallback routes; one note per route, for its error.
    The rows now carrying the message are named in ``row.payload["fell_back_to"]``."""
    notes = []
    carriers: list[int] = []
    for route in (row.payload or {}).get("fallback", []):
        channel, target = str(route["channel"]), str(route["target"])
        under_way = session.scalar(
            select(Notification.id)
            .where(
                Notification.alert_id == row.alert_id,
                Notification.kind == row.kind,
                Notification.subject == row.subject,
                Notification.body == row.body,
                Notification.channel == channel,
                Notification.target == target,
                Notification.created_at >= row.created_at,
                Notification.status != NotificationStatus.FAILED,
                Notification.id != row.id,
            )
            .limit(1)
        )
        where = f"{channel} {redact(target)}"
        if under_way is not None:
            notes.append(f"{where} #{under_way}（已有 already under way）")
            carriers.append(under_way)
            continue
        payload: dict[str, Any] = {
            k: v for k, v in (row.payload or {}).items() if k not in _NOT_COPIED
        }
        payload |= dict(route.get("payload") or {})
        payload["fallback_of"] = row.id
        copy = enqueue(
            session,
            alert_id=row.alert_id,
            channel=channel,
            target=target,
            kind=row.kind,
            subject=row.subject,
            body=row.body,
            payload=payload,
            now=now,
        )
        notes.append(f"{where} #{copy.id}")
        carriers.append(copy.id)
    if carriers:
        row.payload = {**(row.payload or {}), "fell_back_to": carriers}
    return notes
