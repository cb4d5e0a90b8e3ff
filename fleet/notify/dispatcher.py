"""Delivers due notifications from the outbox within each target's rate limit, retries
with backoff, waits out throttles, falls back to other channels, fails visibly.

Several dispatchers may run against one database (several fleet processes).  Rows are
claimed per target, inside the transaction that holds the target's lock
(:mod:`fleet.notify.limits`): it counts the slots the target has left in its window,
takes one per request, and claims the rows by a conditional UPDATE that counts the
attempt and pushes ``next_attempt_at`` one lease ahead.  When more is owed to the target
than it has slots, the owed rows are merged into one digest (:mod:`fleet.notify.digest`)
sent in one slot; with no slot left they wait for the first to free.  No transaction is
held open while a channel talks to the network.  Should a process die between claim and
result, the lease runs out and the row is attempted again: delivery is at least once,
never silently none (an e-mail keeps its Message-ID across such a resend).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Notification, NotificationStatus
from fleet.metrics import Sample
from fleet.notify.base import Channel, ChannelError, Outgoing, redact
from fleet.notify.config import NotifyConfig
from fleet.notify.delivery import record_fate
from fleet.notify.digest import DIGEST, carried, merge
from fleet.notify.fallback import fall_back
from fleet.notify.limits import Limiter

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

_MAX_ERROR = 2000


def _outgoing(row: Notification) -> Outgoing:
    return Outgoing(
        id=row.id,
        channel=row.channel,
        target=row.target,
        kind=row.kind,
        subject=row.subject,
        body=row.body,
        alert_id=row.alert_id,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
    )


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
        self._limiter = Limiter(sessions)
        self._outcomes: Counter[tuple[str, str]] = Counter()  # (channel, sent|retry|failed)
        self._digests: Counter[str] = Counter()  # by channel
        self._fallbacks: Counter[str] = Counter()  # notices sent on by the refused channel
        self._wake = threading.Event()

    def run_due(self) -> int:
        """Attempt what is due now, target by target (up to ``batch_size`` messages
        each); return how many messages (a digest counts once) were attempted."""
        now = self._clock()
        with session_scope(self._sessions) as session:
            targets = session.execute(
                select(Notification.channel, Notification.target)
                .where(
                    Notification.status == NotificationStatus.PENDING,
                    Notification.next_attempt_at <= now,
                )
                .group_by(Notification.channel, Notification.target)
                .order_by(func.min(Notification.next_attempt_at))
            ).all()
        attempted = 0
        for channel, target in targets:
            for _ in range(self._config.batch_size):
                claimed = self._claim(channel, target)
                if claimed is None:
                    break
                self._deliver(*claimed)
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

    def _claim(self, channel: str, target: str) -> tuple[Outgoing, int, datetime] | None:
        """Claim the next message ``target`` may take now: the oldest due row in a slot of
        its own, or all the due rows in one digest when they outnumber the free slots.

        One message per claim, so that its lease covers one attempt only."""
        limit = self._config.channel(channel).limit
        with session_scope(self._sessions) as session:
            locked = self._limiter.lock(session, channel, target)
            # Read the clock under the lock: a slot is stamped when it is taken.
            now = self._clock()
            rows = list(
                session.scalars(
                    select(Notification)
                    .where(
                        Notification.channel == channel,
                        Notification.target == target,
                        Notification.status == NotificationStatus.PENDING,
                        Notification.next_attempt_at <= now,
                    )
                    .order_by(Notification.next_attempt_at, Notification.id)
                    .limit(self._config.batch_size)
                )
            )
            if not rows:
                return None  # all sent, or another dispatcher got them first
            row = rows[0]
            if channel in self._channels:
                gate = self._limiter.gate(session, locked, limit, now)
                if gate.free == 0:
                    assert gate.reopens is not None
                    for waiting in rows:  # no attempt counted: nothing was sent
                        waiting.next_attempt_at = gate.reopens
                    log.info(
                        "%d notification(s) to %s wait until %s: %s",
                        len(rows), redact(target), gate.reopens.isoformat(), gate.reason,
                    )
                    return None
                if len(rows) > gate.free:
                    row = merge(session, rows, now)
                    self._digests[channel] += 1
                    log.warning(
                        "%d notifications owed to %s, %d slot(s) free: sent as digest #%d",
                        len(rows), redact(target), gate.free, row.id,
                    )
            # else: it fails at once, visibly; no request is made, so no slot is taken.
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=self._config.lease_s)
            session.flush()
            if channel in self._channels:
                self._limiter.take(session, locked, row.id, now)
            return _outgoing(row), row.attempts, now

    def _deliver(self, message: Outgoing, attempt: int, claimed_at: datetime) -> None:
        channel = self._channels.get(message.channel)
        failure: ChannelError | None = None
        try:
            if channel is None:
                raise ChannelError(
                    f"channel {message.channel!r} is not configured on this fleet", retryable=False
                )
            channel.send(message)
        except ChannelError as exc:
            failure = exc
        except Exception as exc:  # a channel bug must not lose the message or stop the pass
            log.exception("channel %s crashed on notification %d", message.channel, message.id)
            failure = ChannelError(f"{type(exc).__name__}: {exc}", retryable=True)
        if channel is not None:
            # The service counts the request when it arrives: at the latest, now.
            self._limiter.stamp(message.id, claimed_at, self._clock())
        if failure is not None:
            self._record_failure(message, attempt, failure)
        else:
            self._finish(message, attempt, NotificationStatus.SENT, None)
            self._outcomes[(message.channel, "sent")] += 1

    def _record_failure(self, message: Outgoing, attempt: int, exc: ChannelError) -> None:
        now = self._clock()
        error = str(exc)
        limit = self._config.channel(message.channel).limit
        routes = self._has_fallback(message)
        refused_long = routes and attempt >= self._config.fallback_after
        if exc.throttled:
            # The service said "too fast": it refuses everything for its throttle period,
            # so this row (if retried) and every other one to the target wait that out.
            self._limiter.throttle(message.channel, message.target,
                                   now + timedelta(seconds=limit.throttle_s), error[:200])
        if exc.retryable and attempt < self._config.max_attempts and not refused_long:
            delay = limit.throttle_s if exc.throttled else self._config.backoff(attempt)
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
        self._finish(message, attempt, NotificationStatus.FAILED, error)
        self._outcomes[(message.channel, "failed")] += 1
        why = "permanent error" if not exc.retryable else f"{attempt} attempts"
        log.error(
            "notification %d (alert %s) via %s to %s FAILED after %s: %s",
            message.id,
            message.alert_id,
            message.channel,
            redact(message.target),
            why,
            error,
        )

    def _has_fallback(self, message: Outgoing) -> bool:
        if message.kind != DIGEST:
            return bool(message.payload.get("fallback"))
        with session_scope(self._sessions) as session:
            return any((n.payload or {}).get("fallback")
                       for n in carried(session, message.id) if n.kind != DIGEST)

    def _finish(
        self, message: Outgoing, attempt: int, status: NotificationStatus, error: str | None
    ) -> None:
        """Record the final fate of the row and of the notices it carries, also in their
        alerts' histories; a failed notice goes to its fallback routes in the same
        transaction."""
        now = self._clock()
        with session_scope(self._sessions) as session:
            values: dict[str, object] = {"status": status}
            if status is NotificationStatus.SENT:
                values["sent_at"] = now
            else:
                values["last_error"] = (error or "")[:_MAX_ERROR]
            if not _kept(session, message, attempt, values):
                return
            settled = [session.get_one(Notification, message.id)]
            for notice in carried(session, message.id):
                notice.status = status
                if status is NotificationStatus.SENT:
                    notice.sent_at = now
                else:
                    notice.last_error = f"digest #{message.id}: {error}"[:_MAX_ERROR]
                settled.append(notice)
            for row in settled:
                notes = [] if status is NotificationStatus.SENT else fall_back(session, row, now)
                if notes:
                    self._fallbacks[row.channel] += 1
                    row.last_error = f"{row.last_error} → 改发 fell back to: {'; '.join(notes)}"[
                        :_MAX_ERROR
                    ]
                    log.warning("notification %d fell back to %s", row.id, "; ".join(notes))
                record_fate(session, row, now)

    def _record(self, message: Outgoing, attempt: int, **values: object) -> None:
        with session_scope(self._sessions) as session:
            _kept(session, message, attempt, values)

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
        for channel, n in sorted(self._digests.items()):
            yield Sample(
                "syncclass_notification_digests_total",
                "Digests made because more was owed to a target than its rate limit allowed",
                float(n),
                labels={"channel": channel},
            )
        for channel, n in sorted(self._fallbacks.items()):
            yield Sample(
                "syncclass_notification_fallbacks_total",
                "Notices the channel refused for good, sent on by the people's other channels",
                float(n),
                labels={"channel": channel},
            )


def _kept(session: Session, message: Outgoing, attempt: int, values: dict[str, object]) -> bool:
    """Write ``values`` to the row this dispatcher claimed for ``attempt``; False (and a
    warning) when the lease ran out and another dispatcher took the row: its word stands."""
    result = session.execute(
        update(Notification)
        .where(Notification.id == message.id, Notification.attempts == attempt)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("notification %d was re-claimed before its result was kept", message.id)
        return False
    return True
