"""Delivers due notifications from the outbox, retries with backoff, fails visibly.

Several dispatchers may run against one database (several fleet processes): each row is
*claimed* by a conditional UPDATE that counts the attempt and pushes ``next_attempt_at``
one lease ahead, and only the process whose UPDATE matched sends it.  No transaction is
held open while a channel talks to the network.  Should a process die between claim and
result, the lease runs out and the row is attempted again: delivery is at least once,
never silently none.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Notification, NotificationStatus
from fleet.metrics import Sample
from fleet.notify.base import Channel, ChannelError, Outgoing, redact
from fleet.notify.config import NotifyConfig

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

_MAX_ERROR = 2000


class Dispatcher:
    def __init__(
        self,
        sessions: SessionFactory,
        channels: Mapping[str, Channel],
        config: NotifyConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._channels = dict(channels)
        self._config = config or NotifyConfig()
        self._clock = clock
        self._outcomes: Counter[tuple[str, str]] = Counter()  # (channel, sent|retry|failed)
        self._wake = threading.Event()

    def run_due(self) -> int:
        """Attempt every notification due now (up to ``batch_size``); return how many."""
        now = self._clock()
        with session_scope(self._sessions) as session:
            due = session.execute(
                select(Notification.id, Notification.attempts)
                .where(
                    Notification.status == NotificationStatus.PENDING,
                    Notification.next_attempt_at <= now,
                )
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(self._config.batch_size)
            ).all()
        attempted = 0
        for row_id, attempts in due:
            message = self._claim(row_id, attempts)
            if message is not None:
                self._deliver(message, attempts + 1)
                attempted += 1
        return attempted

    def wake(self) -> None:
        """Notifications were just queued: deliver them now, not at the next poll."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (then call ``wake``), polling every
        ``poll_interval_s`` for retries and for rows other processes queued."""
        while not stop.is_set():
            self._wake.clear()
            try:
                self.run_due()
            except Exception:  # the database may be briefly away; the rows wait for us
                log.exception("notification dispatch pass failed")
            self._wake.wait(self._config.poll_interval_s)

    def _claim(self, row_id: int, seen_attempts: int) -> Outgoing | None:
        # Read the clock per row: a long batch must not start its later leases in the past.
        now = self._clock()
        lease_end = now + timedelta(seconds=self._config.lease_s)
        with session_scope(self._sessions) as session:
            claimed = session.execute(
                update(Notification)
                .where(
                    Notification.id == row_id,
                    Notification.status == NotificationStatus.PENDING,
                    Notification.attempts == seen_attempts,
                    Notification.next_attempt_at <= now,
                )
                .values(attempts=seen_attempts + 1, next_attempt_at=lease_end)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another dispatcher got it first
            row = session.get_one(Notification, row_id)
            return Outgoing(
                id=row.id,
                channel=row.channel,
                target=row.target,
                kind=row.kind,
                subject=row.subject,
                body=row.body,
                alert_id=row.alert_id,
                payload=dict(row.payload or {}),
            )

    def _deliver(self, message: Outgoing, attempt: int) -> None:
        channel = self._channels.get(message.channel)
        try:
            if channel is None:
                raise ChannelError(
                    f"channel {message.channel!r} is not configured on this fleet", retryable=False
                )
            channel.send(message)
        except ChannelError as exc:
            self._record_failure(message, attempt, str(exc), exc.retryable)
        except Exception as exc:  # a channel bug must not lose the message or stop the pass
            log.exception("channel %s crashed on notification %d", message.channel, message.id)
            self._record_failure(message, attempt, f"{type(exc).__name__}: {exc}", True)
        else:
            self._record(message, attempt, status=NotificationStatus.SENT, sent_at=self._clock())
            self._outcomes[(message.channel, "sent")] += 1

    def _record_failure(self, message: Outgoing, attempt: int, error: str, retryable: bool) -> None:
        now = self._clock()
        if retryable and attempt < self._config.max_attempts:
            delay = self._config.backoff(attempt)
            self._record(
                message,
                attempt,
                last_error=error[:_MAX_ERROR],
                next_attempt_at=now + timedelta(seconds=delay),
            )
            self._outcomes[(message.channel, "retry")] += 1
            log.warning(
                "notification %d via %s to %s: attempt %d failed, retry in %.0fs: %s",
                message.id,
                message.channel,
                redact(message.target),
                attempt,
                delay,
                error,
            )
            return
        self._record(
            message, attempt, status=NotificationStatus.FAILED, last_error=error[:_MAX_ERROR]
        )
        self._outcomes[(message.channel, "failed")] += 1
        why = "permanent error" if not retryable else f"{attempt} attempts"
        log.error(
            "notification %d (alert %s) via %s to %s FAILED after %s: %s",
            message.id,
            message.alert_id,
            message.channel,
            redact(message.target),
            why,
            error,
        )

    def _record(self, message: Outgoing, attempt: int, **values: object) -> None:
        with session_scope(self._sessions) as session:
            result = session.execute(
                update(Notification)
                .where(Notification.id == message.id, Notification.attempts == attempt)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                # Our lease ran out and another dispatcher took the row: its word stands.
                log.warning("notification %d was re-claimed before its result was kept", message.id)

    def samples(self) -> Iterable[Sample]:
        """Outbox rows by channel and status, the oldest pending age, delivery outcomes."""
        now = self._clock()
        with session_scope(self._sessions) as session:
            counts = session.execute(
                select(Notification.channel, Notification.status, func.count()).group_by(
                    Notification.channel, Notification.status
                )
            ).all()
            oldest = session.scalar(
                select(func.min(Notification.created_at)).where(
                    Notification.status == NotificationStatus.PENDING
                )
            )
        found = {(channel, NotificationStatus(status)): n for channel, status, n in counts}
        channels = sorted({c for c, _ in found} | set(self._channels))
        for channel in channels:
            for status in NotificationStatus:
                yield Sample(
                    "syncclass_notifications",
                    "Notifications in the outbox by channel and status",
                    float(found.get((channel, status), 0)),
                    kind="gauge",
                    labels={"channel": channel, "status": status.value},
                )
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield Sample(
            "syncclass_notification_oldest_pending_seconds",
            "Age of the oldest notification not yet delivered (0 when none)",
            age,
            kind="gauge",
        )
        for (channel, outcome), n in sorted(self._outcomes.items()):
            yield Sample(
                "syncclass_notification_attempts_total",
                "Delivery attempts by channel and outcome since start",
                float(n),
                labels={"channel": channel, "outcome": outcome},
            )
