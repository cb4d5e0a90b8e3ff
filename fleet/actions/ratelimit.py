"""Rate limits counted in the audit table, so they hold across restarts and processes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.actions.config import RateLimit
from fleet.actions.outcomes import Outcome
from fleet.db.models import AuditEntry

__all__ = ["Exceeded", "first_exceeded"]


@dataclass(frozen=True)
class Exceeded:
    limit: RateLimit
    retry_after_s: float


def first_exceeded(
    session: Session,
    limits: Iterable[RateLimit],
    *,
    actor: str,
    device_id: str,
    action: str,
    now: datetime,
) -> Exceeded | None:
    """The first limit one more ``action`` would break, or None.

    Refused requests are not counted: they did nothing to the classroom.
    """
    for limit in limits:
        if limit.actions and action not in limit.actions:
            continue
        since = now - timedelta(seconds=limit.window_s)
        query = select(AuditEntry.at).where(
            AuditEntry.at > since, AuditEntry.outcome != Outcome.REFUSED.value
        )
        if limit.scope == "device":
            query = query.where(AuditEntry.device_id == device_id)
        else:
            query = query.where(AuditEntry.actor == actor)
        if limit.actions:
            query = query.where(AuditEntry.action.in_(limit.actions))
        recent = session.scalars(query.order_by(AuditEntry.at.desc()).limit(limit.count)).all()
        if len(recent) >= limit.count:
            # One more is allowed once the count-th most recent leaves the window.
            retry = (recent[-1] + timedelta(seconds=limit.window_s) - now).total_seconds()
            return Exceeded(limit, max(retry, 0.0))
    return None
