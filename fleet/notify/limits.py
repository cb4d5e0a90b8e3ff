"""Each channel target's rate limit, kept before sending and across fleet processes.

A target is one robot (its webhook URL), one mailbox or one generic webhook URL.  Every
request made to it is a row in ``notify_slot``; a process may send only while fewer than
``per_window`` slots lie inside the window.  Counting and taking slots is atomic across
processes because it happens inside one transaction that first writes the target's
``notify_target`` row: PostgreSQL then holds that row's lock, SQLite its database write
lock, until the commit, so a second process counting for the same target waits and then
sees the first one's slots.  The throttle a refusal for speed imposes is kept on the
same row, so every process waits it out.

The service counts a request when it arrives, which is after its slot was taken: once
the answer (or the timeout) is in, the slot is stamped again with that instant, by which
the request has surely arrived, so our window never ends before the service's does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import NotifySlot, NotifyTarget
from fleet.notify.config import RateLimit

__all__ = ["Gate", "Limiter", "target_key"]


def target_key(channel: str, target: str) -> str:
    return hashlib.sha256(f"{channel}\n{target}".encode()).hexdigest()


@dataclass(frozen=True)
class Gate:
    """What a target allows now: ``free`` slots, else nothing before ``reopens``."""

    free: int
    reopens: datetime | None = None
    reason: str = ""


class Limiter:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._known: set[str] = set()  # targets whose row exists: no insert attempt needed

    def _ensure(self, key: str, channel: str) -> None:
        if key in self._known:
            return
        try:
            with session_scope(self._sessions) as session:
                if session.get(NotifyTarget, key) is None:
                    session.add(NotifyTarget(key=key, channel=channel, blocked_reason=""))
        except IntegrityError:
            pass  # another process inserted it first: that is all we wanted
        self._known.add(key)

    def lock(self, session: Session, channel: str, target: str) -> NotifyTarget:
        """The target's row, locked until ``session`` commits; call it first in the session."""
        key = target_key(channel, target)
        self._ensure(key, channel)
        session.execute(
            update(NotifyTarget)
            .where(NotifyTarget.key == key)
            .values(channel=channel)
            .execution_options(synchronize_session=False)
        )
        row = session.get(NotifyTarget, key)
        if row is None:  # deleted since we saw it: create it under this transaction
            row = NotifyTarget(key=key, channel=channel, blocked_reason="")
            session.add(row)
            session.flush()
        return row

    @staticmethod
    def gate(session: Session, row: NotifyTarget, limit: RateLimit, now: datetime) -> Gate:
        """Slots free on the locked target ``row`` at ``now``."""
        if row.blocked_until is not None and row.blocked_until > now:
            return Gate(0, row.blocked_until, row.blocked_reason)
        window = timedelta(seconds=limit.window_s)
        session.execute(
            delete(NotifySlot)
            .where(NotifySlot.target_key == row.key, NotifySlot.at < now - window)
            .execution_options(synchronize_session=False)
        )
        used, oldest = session.execute(
            select(func.count(), func.min(NotifySlot.at)).where(
                NotifySlot.target_key == row.key, NotifySlot.at >= now - window
            )
        ).one()
        free = limit.per_window - int(used)
        if free > 0:
            return Gate(free)
        # The oldest slot leaves the window just after oldest + window.
        reopens = oldest + window + timedelta(milliseconds=1)
        return Gate(0, reopens, f"{limit.per_window} per {limit.window_s:g}s used")

    @staticmethod
    def take(session: Session, row: NotifyTarget, notification_id: int, now: datetime) -> None:
        session.add(NotifySlot(target_key=row.key, at=now, notification_id=notification_id))

    def stamp(self, notification_id: int, taken_at: datetime, done_at: datetime) -> None:
        """The request of the slot taken at ``taken_at`` was answered (or gave up) at
        ``done_at``: the slot counts from then."""
        with session_scope(self._sessions) as session:
            session.execute(
                update(NotifySlot)
                .where(NotifySlot.notification_id == notification_id, NotifySlot.at == taken_at)
                .values(at=done_at)
                .execution_options(synchronize_session=False)
            )

    def throttle(self, channel: str, target: str, until: datetime, reason: str) -> None:
        """The target refused for speed: nothing goes to it before ``until``."""
        with session_scope(self._sessions) as session:
            row = self.lock(session, channel, target)
            if row.blocked_until is None or row.blocked_until < until:
                row.blocked_until = until
                row.blocked_reason = reason
