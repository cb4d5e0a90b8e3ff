"""The life-cycle of one ticket: pending → firing → acknowledged → resolved, and reopened.

One ticket per fingerprint (rule, device, entity).  A fault must persist for its rule's
up-delay before it fires and stay clear for the down-delay before it resolves (Netdata's
flap damping); the same fault returning within ``reopen_window`` reopens its ticket (MTR).
A fault a person resolved while the device still reports it waits for the device to
confirm.  Every change is an AlertEvent row, and an :class:`AlertChange` for listeners;
the notice a change owes is marked on the ticket (:func:`fleet.alerts.notices.set_notice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.alerts.config import AlertConfig
from fleet.alerts.context import device_labels
from fleet.alerts.index import OpenIndex, is_open, open_condition
from fleet.alerts.notices import refresh_summary, set_notice
from fleet.alerts.signal import Observation, Signal
from fleet.alerts.stages.lesson_window import LessonWindows
from fleet.checks.config import CheckConfig
from fleet.db.base import insert_on_conflict
from fleet.db.models import ALERT_UNRESOLVED, Alert, AlertEvent, AlertState
from fleet.inventory import DeviceContextCache

__all__ = ["LIVE", "AlertChange", "Lifecycle"]

LIVE: Final = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


@dataclass(frozen=True)
class AlertChange:
    """One change of one ticket, as its history row says (for live listeners)."""

    alert_id: int
    fingerprint: str
    kind: str  # the AlertEvent kind: pending, fired, acknowledged, resolved, queued...
    state: str  # the ticket's state after it
    at: datetime


def is_stale(obs: Observation, at: datetime, alert: Alert) -> bool:
    """Whether a message says nothing newer than what last changed the ticket.

    Each fleet process stamps a message with its own receive time, so with several
    processes a device's fault handled by one after its clear was handled by another
    would look newer.  The agent's (session, seq) orders them wherever they were handled:
    a newer session wins, then the higher seq; the same message again (a redelivery) is
    not news either.  Signals the fleet makes itself, and tickets last changed by one,
    have no seq and fall back to the receive time."""
    if obs.order is not None and alert.order_session is not None and alert.order_seq is not None:
        return obs.order <= (alert.order_session, alert.order_seq)
    return at < alert.last_seen_at


def mark(alert: Alert, obs: Observation) -> None:
    """Remember the agent message that changed the ticket (kept through fleet signals)."""
    if obs.order is not None:
        alert.order_session, alert.order_seq = obs.order


class Lifecycle:
    """The transitions of tickets inside one unit of work (the engine holds the lock)."""

    def __init__(self, config: AlertConfig, places: DeviceContextCache, index: OpenIndex,
                 checks: CheckConfig | None = None) -> None:
        self.config = config
        self._checks = checks or CheckConfig()  # lesson windows open at the first check
        self._windows: tuple[datetime, LessonWindows] | None = None
        self._places = places
        self._index = index
        self.changes: list[AlertChange] = []  # since the engine last handed them on

    def track(self, session: Session, alert: Alert) -> None:
        self._index.update(alert.device_id, alert.fingerprint, alert.rule,
                           alert not in session.deleted and is_open(alert))

    def observe(self, session: Session, obs: Observation, now: datetime) -> None:
        """Apply one message's signals to their tickets."""
        seen: set[str] = set()
        for signal in obs.signals:
            seen.add(signal.fingerprint)
            if not signal.active and signal.fingerprint not in self._index.of(signal.device_id):
                continue  # nothing open that a clear could change
            alert = self.latest(session, signal.fingerprint)
            if alert is not None and is_stale(obs, signal.at, alert):
                continue  # older news (a replayed spool, a slower process) than the ticket's
            if signal.active:
                alert = self.fault(session, alert, signal, obs.device_id, now)
            elif alert is None:  # another fleet process removed it since the last resync
                self._index.update(signal.device_id, signal.fingerprint, signal.rule, False)
                continue
            else:
                self.clear(session, alert, now)
            mark(alert, obs)
            self.track(session, alert)
        unmentioned = self._index.unmentioned(obs.device_id, obs.covers, seen)
        if unmentioned:
            stale = session.scalars(
                select(Alert).where(
                    Alert.device_id == obs.device_id,
                    Alert.rule.in_(obs.covers),
                    open_condition(),
                )
            )
            for alert in stale.all():
                unmentioned.pop(alert.fingerprint, None)
                if (alert.fingerprint not in seen and not is_stale(obs, obs.at, alert)
                        and not alert.entity.startswith(obs.spared)):
                    self.clear(session, alert, now)
                    mark(alert, obs)
                    self.track(session, alert)
            for fingerprint, rule in unmentioned.items():  # closed by another fleet process
                self._index.update(obs.device_id, fingerprint, rule, False)

    def latest(self, session: Session, fingerprint: str) -> Alert | None:
        return session.scalars(
            select(Alert).where(Alert.fingerprint == fingerprint).order_by(Alert.id.desc()).limit(1)
        ).first()

    def fault(
        self, session: Session, alert: Alert | None, signal: Signal, device_id: str,
        now: datetime,
    ) -> Alert:
        window = timedelta(seconds=self.config.reopen_window_s)
        if alert is not None and alert.awaiting_device:
            if signal.at - alert.last_seen_at <= window:
                # The same persisting fault a person resolved: noted, nobody re-told.
                alert.last_seen_at = signal.at
                return alert
            alert.awaiting_device = False  # unseen for a reopen window: a new episode
        opened = False
        if alert is None or (
            alert.state is AlertState.RESOLVED
            and (alert.resolved_at is None or alert.resolved_at + window < now)
        ):
            alert, opened = self.open(session, signal, device_id, now)
        if opened:
            self.record(session, alert, "pending", self.describe(signal), now)
        elif alert.state is AlertState.RESOLVED and alert.pending_since is None:
            alert.pending_since = now
            self.record(session, alert, "returning", self.describe(signal), now)
        elif alert.state in LIVE and alert.clear_since is not None:
            alert.clear_since = None
            self.record(session, alert, "still_failing", "fault seen again / 故障再次出现", now)
        alert.last_seen_at = signal.at
        alert.severity = signal.level
        alert.details = {
            **signal.details,
            "message_zh": signal.message_zh,
            "message_en": signal.message_en,
            "value": signal.value,
            "threshold": signal.threshold,
        }
        if signal.lesson_id is not None:
            alert.lesson_id = signal.lesson_id
        self.maybe_fire(session, alert, now)
        return alert

    def open(
        self, session: Session, signal: Signal, device_id: str, now: datetime
    ) -> tuple[Alert, bool]:
        """A new pending ticket, or the unresolved one another fleet process opened for
        the same fault a moment ago (the unique index lets only one in); True if new."""
        place = self._places.get(session, device_id)
        labels = device_labels(signal.device_id, place)
        labels |= {"rule": signal.rule, "severity": signal.level, "entity": signal.entity}
        row = {
            "fingerprint": signal.fingerprint,
            "rule": signal.rule,
            "severity": signal.level,
            "state": AlertState.PENDING,
            "classroom_id": place.classroom_id if place else signal.classroom_id,
            "device_id": signal.device_id,
            "entity": signal.entity,
            "labels": labels,
            "started_at": now,
            "last_seen_at": signal.at,
            "pending_since": now,
            "escalation_level": 0,
            "reopen_count": 0,
        }
        while True:
            new_id = session.scalar(
                insert_on_conflict(session, Alert)
                .values(row)
                .on_conflict_do_nothing(index_elements=[Alert.fingerprint],
                                        index_where=ALERT_UNRESOLVED)
                .returning(Alert.id)
            )
            if new_id is not None:
                return session.get_one(Alert, new_id), True
            # On PostgreSQL the insert waited for the other transaction, so this statement
            # (a new snapshot under READ COMMITTED) sees the winner; SQLite serialises
            # writers.  Gone again already (its fault cleared inside the up-delay): retry.
            winner = session.scalars(
                select(Alert).where(Alert.fingerprint == signal.fingerprint, ALERT_UNRESOLVED)
            ).first()
            if winner is not None:
                return winner, False

    @staticmethod
    def describe(signal: Signal) -> str:
        return " / ".join(t for t in (signal.message_zh, signal.message_en) if t)

    def clear(self, session: Session, alert: Alert, now: datetime) -> None:
        if alert.state is AlertState.PENDING:
            # Cleared inside its up-delay: it never was an alert (Alertmanager forgets
            # pending alerts the same way), so it leaves no ticket behind.
            session.delete(alert)
        elif alert.awaiting_device:
            alert.awaiting_device = False
            self.record(session, alert, "confirmed",
                         "设备确认故障已消失 / the device reports the fault gone", now)
        elif alert.state is AlertState.RESOLVED:
            if alert.pending_since is not None:
                alert.pending_since = None
                self.record(session, alert, "cleared", "fault gone within up-delay", now)
        elif alert.clear_since is None:
            alert.clear_since = now
            self.record(session, alert, "clearing", "fault no longer seen / 故障已消失", now)
        self.maybe_resolve(session, alert, now)

    # ------------------------------------------------------------ transitions

    def up_delay(self, session: Session, alert: Alert, now: datetime) -> float:
        """The rule's up-delay, or its lesson one when the device is in a lesson window."""
        cfg = self.config
        delay, lesson = cfg.up_delay(alert.rule), cfg.up_delay(alert.rule, in_lesson=True)
        if lesson == delay:
            return delay  # no lesson lookup for the rules the lessons do not change
        return lesson if self.windows(session, now).in_lesson(alert.labels, now) else delay

    def windows(self, session: Session, now: datetime, fresh: bool = False) -> LessonWindows:
        """The lesson windows at ``now``, loaded once per instant (or again, ``fresh``):
        a tick's many pending offline tickets (a county's power cut) and its pipeline
        share one timetable query."""
        if fresh or self._windows is None or self._windows[0] != now:
            self._windows = now, LessonWindows.load(session, now, self.config, self._checks)
        return self._windows[1]

    def maybe_fire(self, session: Session, alert: Alert, now: datetime) -> None:
        since = alert.pending_since
        if since is None or now - since < timedelta(seconds=self.up_delay(session, alert, now)):
            return
        if alert.state is AlertState.RESOLVED:
            alert.reopen_count += 1
            alert.resolved_at = alert.acknowledged_at = None
            alert.acknowledged_by = alert.ack_comment = None
            alert.escalation_level = 0
            alert.last_notified_at = None
            kind = "reopened"
        else:
            kind = "fired"
        alert.state = AlertState.FIRING
        alert.started_at = now
        alert.pending_since = alert.clear_since = None
        refresh_summary(session, alert, self.config, now)
        self.record(session, alert, kind, alert.summary_zh, now)
        set_notice(alert, "firing", now)

    def maybe_resolve(self, session: Session, alert: Alert, now: datetime) -> None:
        since = alert.clear_since
        if alert.state not in LIVE or since is None:
            return
        if now - since < timedelta(seconds=self.config.down_delay(alert.rule)):
            return
        self.resolve(session, alert, now, "system", "recovered / 已恢复")

    def resolve(self, session: Session, alert: Alert, now: datetime, actor: str,
                 text: str, notice: str = "resolved") -> None:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = now
        alert.clear_since = alert.pending_since = alert.suppressed_by = None
        self.record(session, alert, "resolved", text, now, actor)
        set_notice(alert, notice, now)

    def escalate(self, session: Session, alert: Alert, now: datetime, why: str) -> None:
        alert.escalation_level = 1
        self.record(session, alert, "escalated", why, now)
        set_notice(alert, "escalation", now)

    def record(self, session: Session, alert: Alert, kind: str, text: str, now: datetime,
                actor: str = "system") -> None:
        session.add(AlertEvent(alert_id=alert.id, at=now, kind=kind, actor=actor, text=text))
        self.changes.append(AlertChange(alert.id, alert.fingerprint, kind, alert.state.value, now))
