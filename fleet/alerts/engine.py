"""The alert life-cycle: pending → firing → acknowledged → resolved, and reopened.

One ticket per fingerprint (rule, device, entity).  A fault must persist for its rule's
up-delay before it fires and stay clear for the down-delay before it resolves (Netdata's
flap damping); the same fault returning within ``reopen_window`` reopens its ticket (MTR).
While firing and unacknowledged a reminder goes out every ``reminder_interval``; not
acknowledged within ``escalate_after``, or still failing when an affected lesson starts,
the county 电教 contacts are told (an acknowledgement stops reminders and the timed
escalation, ThingsBoard-style; a lesson starting on a broken classroom escalates
anyway, because the lesson is then affected whoever is on it).  Every change is an
AlertEvent row; notifications go through :mod:`fleet.alerts.notices`.

The engine is a MessageSink for the ingest; ``tick()`` runs the timers every few seconds.
A healthy device's all-clear touches no database: :mod:`fleet.alerts.index` knows which
devices have anything open, and device places are cached until ``reload_inventory()``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fleet.alerts import mute, rules, silence
from fleet.alerts.clones import CloneWatch
from fleet.alerts.config import AlertConfig
from fleet.alerts.context import device_labels, lessons_in_progress
from fleet.alerts.index import OpenIndex, is_open, open_condition
from fleet.alerts.mute import OPEN_STATES, load_muters, muted_by
from fleet.alerts.notices import Enqueue, flush_notices, refresh_summary, set_notice
from fleet.alerts.signal import Observation, Signal
from fleet.checks.scheduler import Unanswered
from fleet.db.base import SessionFactory, insert_on_conflict, session_scope, utcnow
from fleet.db.models import ALERT_UNRESOLVED, Alert, AlertEvent, AlertState, Lesson, Silence
from fleet.inventory import DeviceContextCache
from fleet.metrics import Sample
from fleet.notify.delivery import unreached
from fleet.notify.outbox import enqueue as outbox_enqueue
from fleet.sinks import NullSink

__all__ = ["AlertEngine", "AlertNotFound", "AlertStateError", "select_alerts"]

log = logging.getLogger(__name__)

LIVE = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


class AlertNotFound(LookupError):
    """No alert, silence or window with that id."""


class AlertStateError(ValueError):
    """The alert is not in a state that allows this (e.g. acknowledging a resolved one)."""


class AlertEngine(NullSink):
    def __init__(
        self,
        sessions: SessionFactory,
        config: AlertConfig,
        clock: Callable[[], datetime] = utcnow,
        enqueue: Enqueue | None = None,
        places: DeviceContextCache | None = None,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self._enqueue = enqueue
        self._lock = threading.RLock()
        # The newest agent session seen per device: a late Last Will of an older
        # session must not mark a reconnected device offline.
        self._agent_sessions: dict[str, int] = {}
        # The highest seq heard per device: the ingest hands messages over in seq order
        # except a late fill of a gap (a spool record resent after a lost PUBACK), which
        # is older news than what the tickets already know and must not reopen them.
        self._heads: dict[str, int] = {}
        self.late_ignored = 0
        self.signals_observed: Counter[str] = Counter()
        self.notifications: Counter[tuple[str, str]] = Counter()
        self.malformed_sections = 0
        self._places = places or DeviceContextCache()
        self.clones = CloneWatch()
        self._index = OpenIndex(config.index_resync_s)
        with session_scope(sessions) as session:
            self._index.load(session, clock())

    def reload_inventory(self) -> None:
        """Devices were moved, added or renamed: forget the cached places."""
        self._places.clear()

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One locked unit of work; after a rollback the index is reloaded, since the
        changes it recorded may not have reached the database."""
        with self._lock:
            try:
                with session_scope(self.sessions) as session:
                    if not self._index.loaded:
                        self._index.load(session, self.clock())
                    yield session
            except BaseException:
                self._index.invalidate()
                raise

    def _track(self, session: Session, alert: Alert) -> None:
        self._index.update(alert.device_id, alert.fingerprint, alert.rule,
                           alert not in session.deleted and is_open(alert))

    # ------------------------------------------------------------ MessageSink

    # Every signal of a message is stamped with the fleet's clock when the message reaches
    # the engine (its receive time): the device's ts is its own clock's word, kept for
    # display.  The ingest hands each device's messages over in (session, seq) order.

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        # Before the session check: two PCs under one id send births of one session each.
        cloned = self.clones.birth(device_id, payload, self.clock())
        if cloned is not None:
            self.observe(Observation(device_id, cloned.at, (cloned,)))
        agent_session = int(payload["session"])
        with self._lock:
            known = self._agent_sessions.get(device_id)
            # A birth behind the seqs already heard: its counters started again (a
            # reinstall counts sessions and seqs from 1), so its lower session is news too.
            restarted = payload["state"] == "online" and int(payload["seq"]) < self._heads.get(
                device_id, -1
            )
            if restarted:
                self._heads.pop(device_id)
            elif known is not None and agent_session < known:
                log.info("status of old session %s of %s ignored", agent_session, device_id)
                return
            self._agent_sessions[device_id] = agent_session
        now = self.clock()
        status = rules.from_status(device_id, payload, now)
        # Any status means it has connected and is enrolled (the ingest let it through).
        heard = [silence.heard(device_id, now, silence.NEVER_CONNECTED, silence.NOT_ENROLLED)]
        # A connection made after the missed check can answer again: a birth of a session
        # newer than the one this engine knew.  The retained birth redelivered when the
        # fleet (re)subscribes is not one, and after a fleet restart the first birth is not
        # known to be: the device's next check answer clears the ticket then.
        if payload["state"] == "online" and known is not None and agent_session > known:
            heard.append(silence.heard(device_id, now, silence.NO_ANSWER))
        self.observe(status, *heard)

    def _late(self, device_id: str, payload: dict[str, Any]) -> bool:
        """Whether the message is a late fill, behind what this engine has heard."""
        seq = int(payload["seq"])
        with self._lock:
            if seq < self._heads.get(device_id, -1):
                self.late_ignored += 1
                return True
            self._heads[device_id] = seq
            return False

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        if self._late(device_id, payload):
            return
        now = self.clock()
        observation, problems = rules.from_telemetry(device_id, payload, now)
        with self._lock:
            self.malformed_sections += len(problems)
        reporting = Signal("device_silent", device_id, False, now)
        self.observe(observation, Observation(device_id, now, (reporting,)))

    def device_silent(self, device_id: str) -> None:
        """A connected agent that stopped reporting: its Last Will never comes, since
        the connection is alive (a hung process behind a healthy socket)."""
        now = self.clock()
        signal = Signal(
            "device_silent", device_id, True, now,
            message_zh="设备连接正常但已超过三个周期未上报数据（代理程序可能卡死，可远程重启）",
            message_en="connected but no data for three intervals (the agent may be hung; "
            "a remote restart may help)",
        )
        self.observe(Observation(device_id, now, (signal,)))

    def clock_skew(self, device_id: str, offset_s: float, skewed: bool) -> None:
        """The device's clock is ``offset_s`` seconds off the fleet's (from the device
        state's live samples); ``skewed`` when that is beyond the configured limit."""
        now = self.clock()
        signal = Signal(
            "clock_skew", device_id, skewed, now, value=round(offset_s, 1),
            details={"offset_s": round(offset_s, 1)},
            message_zh=f"设备时钟比平台{'快' if offset_s > 0 else '慢'}{_span_zh(offset_s)}。"
            "请在设备上启用NTP时间同步（运行 timedatectl 查看 \"System clock synchronized\"，"
            "用 timedatectl set-ntp true 开启）；若正好相差整数小时，检查BIOS时钟是否设成了"
            "本地时间（timedatectl set-local-rtc 0）",
            message_en=f"the device clock is {_span_en(offset_s)} "
            f"{'ahead of' if offset_s > 0 else 'behind'} the fleet's. Enable NTP on the "
            "device (timedatectl shows \"System clock synchronized\"; timedatectl set-ntp "
            "true turns it on); a whole number of hours off means the BIOS clock is kept in "
            "local time (timedatectl set-local-rtc 0)",
        )
        self.observe(Observation(device_id, now, (signal,)))

    def on_event(self, device_id: str, payload: dict[str, Any]) -> None:
        if self._late(device_id, payload):
            return
        self.observe(rules.from_event(device_id, payload, self.clock()))

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        with self._writing() as session:
            now = self.clock()
            observation = rules.from_check(session, device_id, payload, now)
            self._count(observation)
            self._observe(session, observation, now)
        # Any answer, even a late one, ends the silence (on fleet time: it is news now).
        self.observe(silence.heard(device_id, self.clock(), silence.NO_ANSWER,
                                   silence.NEVER_CONNECTED))

    def unanswered(
        self, runs: Sequence[Unanswered], ever_connected: Callable[[str], bool]
    ) -> None:
        """Lesson checks that expired unanswered (from the checks scheduler)."""
        now = self.clock()
        signals = [silence.unanswered(run, ever_connected(run.device_id), now) for run in runs]
        self.observe(*(Observation(s.device_id, now, (s,)) for s in signals if s is not None))

    def stranger(self, device_id: str, active: bool, disabled: bool,
                 details: dict[str, Any]) -> None:
        """An agent the broker let in but the inventory refuses (or no longer hears)."""
        now = self.clock()
        signal = silence.stranger(device_id, now, active, disabled, details)
        self.observe(Observation(device_id, now, (signal,)))

    # ------------------------------------------------------------ observing

    def observe(self, *observations: Observation) -> None:
        with self._lock:
            for observation in observations:
                self._count(observation)
            busy = [o for o in observations if self._may_change(o)]
            if not busy:
                return
            with self._writing() as session:
                now = self.clock()
                for observation in busy:
                    self._observe(session, observation, now)

    def _count(self, obs: Observation) -> None:
        self.signals_observed.update(signal.rule for signal in obs.signals)

    def _may_change(self, obs: Observation) -> bool:
        """False for the common all-clear of a device with nothing open: no DB needed."""
        return (
            not self._index.loaded
            or bool(self._index.of(obs.device_id))
            or any(signal.active for signal in obs.signals)
        )

    def _observe(self, session: Session, obs: Observation, now: datetime) -> None:
        seen: set[str] = set()
        for signal in obs.signals:
            seen.add(signal.fingerprint)
            if not signal.active and signal.fingerprint not in self._index.of(signal.device_id):
                continue  # nothing open that a clear could change
            alert = self._latest(session, signal.fingerprint)
            if alert is not None and signal.at < alert.last_seen_at:
                continue  # older news (a replayed spool) than what the ticket knows
            if signal.active:
                alert = self._fault(session, alert, signal, obs.device_id, now)
            elif alert is None:  # another fleet process removed it since the last resync
                self._index.update(signal.device_id, signal.fingerprint, signal.rule, False)
                continue
            else:
                self._clear(session, alert, now)
            self._track(session, alert)
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
                if alert.fingerprint not in seen and obs.at >= alert.last_seen_at:
                    self._clear(session, alert, now)
                    self._track(session, alert)
            for fingerprint, rule in unmentioned.items():  # closed by another fleet process
                self._index.update(obs.device_id, fingerprint, rule, False)

    def _latest(self, session: Session, fingerprint: str) -> Alert | None:
        return session.scalars(
            select(Alert).where(Alert.fingerprint == fingerprint).order_by(Alert.id.desc()).limit(1)
        ).first()

    def _fault(
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
            alert, opened = self._open(session, signal, device_id, now)
        if opened:
            self._record(session, alert, "pending", self._describe(signal), now)
        elif alert.state is AlertState.RESOLVED and alert.pending_since is None:
            alert.pending_since = now
            self._record(session, alert, "returning", self._describe(signal), now)
        elif alert.state in LIVE and alert.clear_since is not None:
            alert.clear_since = None
            self._record(session, alert, "still_failing", "fault seen again / 故障再次出现", now)
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
        self._maybe_fire(session, alert, now)
        return alert

    def _open(
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
    def _describe(signal: Signal) -> str:
        return " / ".join(t for t in (signal.message_zh, signal.message_en) if t)

    def _clear(self, session: Session, alert: Alert, now: datetime) -> None:
        if alert.state is AlertState.PENDING:
            # Cleared inside its up-delay: it never was an alert (Alertmanager forgets
            # pending alerts the same way), so it leaves no ticket behind.
            session.delete(alert)
        elif alert.awaiting_device:
            alert.awaiting_device = False
            self._record(session, alert, "confirmed",
                         "设备确认故障已消失 / the device reports the fault gone", now)
        elif alert.state is AlertState.RESOLVED:
            if alert.pending_since is not None:
                alert.pending_since = None
                self._record(session, alert, "cleared", "fault gone within up-delay", now)
        elif alert.clear_since is None:
            alert.clear_since = now
            self._record(session, alert, "clearing", "fault no longer seen / 故障已消失", now)
        self._maybe_resolve(session, alert, now)

    # ------------------------------------------------------------ transitions

    def _maybe_fire(self, session: Session, alert: Alert, now: datetime) -> None:
        since = alert.pending_since
        if since is None or now - since < timedelta(seconds=self.config.up_delay(alert.rule)):
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
        self._record(session, alert, kind, alert.summary_zh, now)
        set_notice(alert, "firing", now)

    def _maybe_resolve(self, session: Session, alert: Alert, now: datetime) -> None:
        since = alert.clear_since
        if alert.state not in LIVE or since is None:
            return
        if now - since < timedelta(seconds=self.config.down_delay(alert.rule)):
            return
        self._resolve(session, alert, now, "system", "recovered / 已恢复")

    def _resolve(self, session: Session, alert: Alert, now: datetime, actor: str,
                 text: str, notice: str = "resolved") -> None:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = now
        alert.clear_since = alert.pending_since = alert.suppressed_by = None
        self._record(session, alert, "resolved", text, now, actor)
        set_notice(alert, notice, now)

    def _escalate(self, session: Session, alert: Alert, now: datetime, why: str) -> None:
        alert.escalation_level = 1
        self._record(session, alert, "escalated", why, now)
        set_notice(alert, "escalation", now)

    def _record(self, session: Session, alert: Alert, kind: str, text: str, now: datetime,
                actor: str = "system") -> None:
        session.add(AlertEvent(alert_id=alert.id, at=now, kind=kind, actor=actor, text=text))

    # ------------------------------------------------------------ timers

    def resync(self) -> None:
        """Reload the open-ticket index when due: what a standby process (which does not
        tick) needs to hear the clears of tickets another process opened."""
        with self._lock:
            now = self.clock()
            if self._index.loaded and not self._index.due(now):
                return
            with session_scope(self.sessions) as session:
                self._index.load(session, now)

    def tick(self) -> None:
        """Run the delays, mutes, escalations, reminders and the notification stage."""
        with self._writing() as session:
            now = self.clock()
            waiting = session.scalars(select(Alert).where(Alert.pending_since.is_not(None)))
            for alert in waiting.all():
                self._maybe_fire(session, alert, now)
                self._track(session, alert)
            clearing = session.scalars(
                select(Alert).where(Alert.clear_since.is_not(None), Alert.state.in_(LIVE))
            )
            for alert in clearing.all():
                self._maybe_resolve(session, alert, now)
                self._track(session, alert)
            session.flush()
            if self._index.due(now):
                # Tickets another fleet process opened or closed since the last look.
                self._index.load(session, now)
            muters = load_muters(session, now, self.config.timezone, self.config.mute_on_holidays)
            live = session.scalars(select(Alert).where(Alert.state.in_(OPEN_STATES))).all()
            lessons = lessons_in_progress(session, now)
            # A technician no route reached: the county is told, as if nobody had acted.
            lost = unreached(session, [a for a in live if a.state is AlertState.FIRING
                                       and a.escalation_level == 0])
            for alert in live:
                reason = muted_by(muters, alert.labels, now)
                if reason != alert.suppressed_by:
                    text = reason or "no longer muted / 解除屏蔽"
                    self._record(session, alert, "muted" if reason else "unmuted", text, now)
                    alert.suppressed_by = reason
                if alert.id in lost and reason is None:
                    self._escalate(session, alert, now, lost[alert.id])
                if alert.state in LIVE and reason is None:
                    self._timers(session, alert, now, lessons.get(alert.classroom_id or 0, []))
            flush_notices(
                session, self.config, muters, self._enqueue or outbox_enqueue, now,
                self.notifications, lambda a, k, t: self._record(session, a, k, t, now),
            )

    def _timers(
        self, session: Session, alert: Alert, now: datetime, lessons: Sequence[Lesson]
    ) -> None:
        cfg = self.config
        if alert.escalation_level == 0:
            after = timedelta(seconds=cfg.escalate_after_s)
            told = (
                self._told_at(session, alert)
                if alert.state is AlertState.FIRING and now - alert.started_at >= after
                else None
            )
            if told is not None and now - told >= after:
                minutes = round(cfg.escalate_after_s / 60)
                why = f"{minutes} 分钟内无人受理 / not acknowledged within {minutes} min"
                self._escalate(session, alert, now, why)
                return
            lesson = self._lesson_at_risk(alert, lessons)
            if lesson is not None:
                alert.lesson_id = alert.lesson_id or lesson
                self._escalate(session, alert, now, f"课程开始时仍有故障 / still failing at the "
                               f"start of lesson #{lesson}")
                return
        if alert.state is not AlertState.FIRING or alert.notice_kind is not None:
            return
        if alert.last_notified_at is None:
            set_notice(alert, "firing", now)  # it was muted when it fired, and no longer is
        elif now - alert.last_notified_at >= timedelta(seconds=cfg.reminder_interval_s):
            set_notice(alert, "reminder", now)

    @staticmethod
    def _told_at(session: Session, alert: Alert) -> datetime | None:
        """When the technicians were first told of this episode: the escalation clock
        starts there, not while a silence or maintenance window kept them uninformed."""
        return session.scalar(
            select(func.min(AlertEvent.at)).where(
                AlertEvent.alert_id == alert.id,
                AlertEvent.kind.in_(("queued", "notified", "unrouted")),
                AlertEvent.at >= alert.started_at,
            )
        )

    def _lesson_at_risk(self, alert: Alert, lessons: Sequence[Lesson]) -> int | None:
        """A lesson under way in the alert's classroom that started while the fault
        persisted (allowing for the rule's up-delay, which made the ticket fire late)."""
        grace = timedelta(seconds=self.config.up_delay(alert.rule))
        for lesson in lessons:
            if alert.started_at <= lesson.starts_at + grace:
                return lesson.id
        return None

    # ------------------------------------------------------------ people

    def acknowledge(self, alert_id: int, actor: str, comment: str) -> None:
        """Someone is on it: stops reminders and the timed escalation; others are told who."""
        if not comment.strip():
            raise ValueError("an acknowledgement needs a comment saying who is on it and how")
        with self._writing() as session:
            alert = self._get(session, alert_id)
            if alert.state not in LIVE:
                raise AlertStateError(f"alert {alert_id} is {alert.state.value}, not firing")
            now = self.clock()
            alert.state = AlertState.ACKNOWLEDGED
            alert.acknowledged_at = now
            alert.acknowledged_by = actor
            alert.ack_comment = comment.strip()
            self._record(session, alert, "acknowledged", alert.ack_comment, now, actor)
            set_notice(alert, "acknowledged", now)
            self._track(session, alert)

    def resolve_manually(self, alert_id: int, actor: str, comment: str) -> None:
        """Close a ticket by hand (a device taken away for repair).

        A fault the device still reports stays resolved, waiting for the device to
        confirm: its further reports are absorbed, not reopened, so nobody gets a new
        e-mail seconds later and the ticket keeps its "since"; the device's all-clear
        confirms it.  Unseen for a reopen window and then reported again, it is news.
        """
        if not comment.strip():
            raise ValueError("a manual resolution needs a comment")
        with self._writing() as session:
            alert = self._get(session, alert_id)
            if alert.state is AlertState.RESOLVED:
                raise AlertStateError(f"alert {alert_id} is already resolved")
            # Still reported (not clearing): the API and page say "waiting for the device",
            # and those told of it hear it was closed by hand, not that it recovered.
            present = alert.clear_since is None
            self._resolve(session, alert, self.clock(), actor, comment.strip(),
                          "closed" if present else "resolved")
            alert.awaiting_device = present
            self._track(session, alert)

    @staticmethod
    def _get(session: Session, alert_id: int) -> Alert:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return alert

    def add_silence(
        self,
        matchers: Mapping[str, Any],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str = "",
    ) -> int:
        with session_scope(self.sessions) as session:
            return mute.add_silence(session, matchers, starts_at, ends_at, created_by, comment).id

    def delete_silence(self, silence_id: int) -> None:
        with session_scope(self.sessions) as session:
            silence = session.get(Silence, silence_id)
            if silence is None:
                raise AlertNotFound(f"no silence {silence_id}")
            session.delete(silence)

    def add_maintenance_window(
        self,
        name: str,
        weekdays: Sequence[int],
        start_time: str,
        end_time: str,
        matchers: Mapping[str, Any] | None = None,
        timezone: str | None = None,
    ) -> int:
        """A recurring mute; no matchers means every alert (the whole fleet's nights)."""
        with session_scope(self.sessions) as session:
            return mute.add_window(session, name, weekdays, start_time, end_time,
                                   matchers or {}, timezone or self.config.timezone).id

    # ------------------------------------------------------------ reading

    @staticmethod
    def query(session: Session, **filters: Any) -> list[Alert]:
        """The current alerts (see :func:`select_alerts` for the filters)."""
        return list(session.scalars(select_alerts(**filters)))

    def samples(self) -> Iterable[Sample]:
        with session_scope(self.sessions) as session:
            rows = session.execute(select(Alert.state, func.count()).group_by(Alert.state))
            counts = {state: n for state, n in rows}
        for state in AlertState:
            yield Sample("syncclass_alerts", "Alerts by state", float(counts.get(state, 0)),
                         "gauge", {"state": state.value})
        for rule, n in sorted(self.signals_observed.items()):
            yield Sample("syncclass_alert_signals_total", "Signals observed by the alert rules",
                         float(n), labels={"rule": rule})
        for (kind, channel), n in sorted(self.notifications.items()):
            yield Sample("syncclass_alert_notifications_total", "Notifications enqueued",
                         float(n), labels={"kind": kind, "channel": channel})
        yield Sample("syncclass_alert_late_ignored_total",
                     "Late-filled telemetry and events, older than what the tickets know",
                     float(self.late_ignored))
        yield Sample("syncclass_alert_malformed_sections_total",
                     "Telemetry sections skipped as malformed", float(self.malformed_sections))


def _span_zh(offset_s: float) -> str:
    hours, rest = divmod(round(abs(offset_s)), 3600)
    return f"{hours}小时{rest // 60}分" if hours else f"{rest // 60}分{rest % 60}秒"


def _span_en(offset_s: float) -> str:
    hours, rest = divmod(round(abs(offset_s)), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def select_alerts(
    state: AlertState | Iterable[AlertState] | None = None,
    classroom_ids: Iterable[int] | None = None,
    device_id: str | None = None,
    rule: str | None = None,
    include_pending: bool = False,
    limit: int = 500,
) -> Select[Alert]:
    """Alerts, newest first; pending ones (inside their up-delay) only when asked.  The
    API narrows the same statement to what a person may see."""
    query = select(Alert).order_by(Alert.started_at.desc(), Alert.id.desc()).limit(limit)
    if isinstance(state, AlertState):
        query = query.where(Alert.state == state)
    elif state is not None:
        query = query.where(Alert.state.in_(list(state)))
    elif not include_pending:
        query = query.where(Alert.state != AlertState.PENDING)
    if classroom_ids is not None:
        query = query.where(Alert.classroom_id.in_(list(classroom_ids)))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if rule is not None:
        query = query.where(Alert.rule == rule)
    return query
