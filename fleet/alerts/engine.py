"""The alert engine: the ingest's sink and the ticker's one ``tick``.

Messages become :class:`~fleet.alerts.signal.Observation` s (:mod:`fleet.alerts.rules`,
:mod:`fleet.alerts.silence`), applied to their tickets by :mod:`fleet.alerts.lifecycle`.
``tick()`` (the one entry point the ticker calls, every few seconds) fires and resolves
what its delays allow, then passes the open alerts through the notification pipeline
(:mod:`fleet.alerts.pipeline`: inhibit → maintenance → holiday → silence → timers →
group → route → outbox).  People's actions (acknowledge, resolve, silences) are
:mod:`fleet.alerts.people`.  Listeners (``listen``) hear every ticket change once its
transaction has committed.

A healthy device's all-clear touches no database: :mod:`fleet.alerts.index` knows which
devices have anything open, and device places are cached until ``reload_inventory()``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fleet.alerts import pipeline, rules, silence
from fleet.alerts.clones import CloneWatch
from fleet.alerts.config import AlertConfig
from fleet.alerts.context import lessons_in_progress
from fleet.alerts.index import OpenIndex
from fleet.alerts.lifecycle import LIVE, AlertChange, Lifecycle
from fleet.alerts.mute import OPEN_STATES
from fleet.alerts.notices import Enqueue
from fleet.alerts.people import AlertNotFound, AlertStateError, PeopleActions
from fleet.alerts.queries import select_alerts
from fleet.alerts.signal import Observation, Signal
from fleet.alerts.skew import skew_signal
from fleet.alerts.stages.base import Tick
from fleet.checks.config import CheckConfig
from fleet.checks.scheduler import Unanswered
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Alert, AlertState, DeviceState
from fleet.inventory import DeviceContextCache
from fleet.metrics import Sample
from fleet.notify.outbox import enqueue as outbox_enqueue
from fleet.sinks import NullSink

__all__ = ["AlertEngine", "AlertNotFound", "AlertStateError", "Listener", "select_alerts"]

log = logging.getLogger(__name__)

#: Called with the ticket changes of one committed unit of work (e.g. the page's live
#: updates); it runs on the engine's thread, so it must be quick and must not raise.
Listener = Callable[[Sequence[AlertChange]], None]

class AlertEngine(NullSink, PeopleActions):
    def __init__(
        self,
        sessions: SessionFactory,
        config: AlertConfig,
        clock: Callable[[], datetime] = utcnow,
        enqueue: Enqueue | None = None,
        places: DeviceContextCache | None = None,
        checks: CheckConfig | None = None,
        wake: Callable[[datetime], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self._enqueue = enqueue
        self._lock = threading.RLock()
        # The newest agent session seen per device: a late Last Will of an older
        # session must not mark a reconnected device offline.
        self._agent_sessions: dict[str, int] = {}
        # Until a device's birth is heard: the session its device state stored (read once
        # per device, not per message of a restarted process's backlog).
        self._stored_sessions: dict[str, int | None] = {}
        # The highest seq heard per device: the ingest hands messages over in seq order
        # except a late fill of a gap (a spool record resent after a lost PUBACK), which
        # is older news than what the tickets already know and must not reopen them.
        self._heads: dict[str, int] = {}
        self.late_ignored = 0
        self.signals_observed: Counter[str] = Counter()
        self.notifications: Counter[tuple[str, str]] = Counter()
        self.malformed_sections = 0
        self.clones = CloneWatch()
        self._index = OpenIndex(config.index_resync_s)
        self._places = places or DeviceContextCache()
        self.life = Lifecycle(config, self._places, self._index, checks)
        self._listeners: list[Listener] = []
        if wake is not None:
            self.listen(lambda changes: _wake_for_notices(changes, config, wake))
        with session_scope(sessions) as session:
            self._index.load(session, clock())

    def reload_inventory(self) -> None:
        """Devices were moved, added or renamed: forget the cached places."""
        self._places.clear()

    def listen(self, listener: Listener) -> None:
        """Hear every ticket change after its transaction commits."""
        self._listeners.append(listener)

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
                self.life.changes.clear()
                raise
            changes, self.life.changes = self.life.changes, []
        if changes:
            for listener in self._listeners:
                try:
                    listener(changes)
                except Exception:  # a listener's bug must not stop the alerts
                    log.exception("alert listener %r failed", listener)

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
                # Not the retained birth redelivered behind a backlog (same session): a
                # lower session with lower seqs is an agent counting from 1 again.
                if known is not None and agent_session < known:
                    self._forget_order(device_id)
            elif known is not None and agent_session < known:
                log.info("status of old session %s of %s ignored", agent_session, device_id)
                return
            self._agent_sessions[device_id] = agent_session
            self._stored_sessions.pop(device_id, None)
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

    def _ordered(self, device_id: str, payload: dict[str, Any], obs: Observation) -> Observation:
        """The observation with the message's place in the agent's order: the session of
        the device's latest birth (messages other than status carry only their seq) and
        the seq.  Without a known session (a device never heard of): receive time."""
        with self._lock:
            agent_session = self._agent_sessions.get(device_id)
            if agent_session is None and not self._may_change(obs):
                return obs  # an all-clear with nothing open: no database, no order needed
            stored = device_id in self._stored_sessions
            if agent_session is None and stored:
                agent_session = self._stored_sessions[device_id]
        if agent_session is None and not stored:
            # A restarted process's persistent session delivers its backlog before the
            # retained births: the session the device state last stored.
            with session_scope(self.sessions) as session:
                agent_session = session.scalar(
                    select(DeviceState.session).where(DeviceState.device_id == device_id))
            with self._lock:
                if device_id not in self._agent_sessions:  # no birth heard meanwhile
                    self._stored_sessions[device_id] = agent_session
        if agent_session is None:
            return obs
        return dataclasses.replace(obs, order=(agent_session, int(payload["seq"])))

    def _forget_order(self, device_id: str) -> None:
        """A reinstalled agent counts sessions and seqs from 1 again: its tickets' stored
        order would make all its news look old."""
        with session_scope(self.sessions) as session:
            session.execute(update(Alert).where(Alert.device_id == device_id)
                            .values(order_session=None, order_seq=None))

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        if self._late(device_id, payload):
            return
        now = self.clock()
        observation, problems = rules.from_telemetry(device_id, payload, now)
        observation = self._ordered(device_id, payload, observation)
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
        self.observe(Observation(device_id, now, (skew_signal(device_id, offset_s, skewed, now),)))

    def on_event(self, device_id: str, payload: dict[str, Any]) -> None:
        if self._late(device_id, payload):
            return
        self.observe(self._ordered(device_id, payload,
                                   rules.from_event(device_id, payload, self.clock())))

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        with self._writing() as session:
            now = self.clock()
            observation = self._ordered(device_id, payload,
                                        rules.from_check(session, device_id, payload, now))
            self._count(observation)
            self.life.observe(session, observation, now)
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
                    self.life.observe(session, observation, now)

    def _count(self, obs: Observation) -> None:
        self.signals_observed.update(signal.rule for signal in obs.signals)

    def _may_change(self, obs: Observation) -> bool:
        """False for the common all-clear of a device with nothing open: no DB needed."""
        return (
            not self._index.loaded
            or bool(self._index.of(obs.device_id))
            or any(signal.active for signal in obs.signals)
        )


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
        """Fire and resolve what the delays allow, then run the notification pipeline."""
        with self._writing() as session:
            now = self.clock()
            # Fresh each tick: a lesson added since a message at this instant counts.
            windows = self.life.windows(session, now, fresh=True)
            waiting = session.scalars(select(Alert).where(Alert.pending_since.is_not(None)))
            for alert in waiting.all():
                self.life.maybe_fire(session, alert, now)
                self.life.track(session, alert)
            clearing = session.scalars(
                select(Alert).where(Alert.clear_since.is_not(None), Alert.state.in_(LIVE))
            )
            for alert in clearing.all():
                self.life.maybe_resolve(session, alert, now)
                self.life.track(session, alert)
            session.flush()
            if self._index.due(now):
                # Tickets another fleet process opened or closed since the last look.
                self._index.load(session, now)
            pipeline.run(Tick(
                session=session,
                config=self.config,
                now=now,
                alerts=session.scalars(select(Alert).where(Alert.state.in_(OPEN_STATES))).all(),
                lessons=lessons_in_progress(session, now),
                record=lambda a, k, t: self.life.record(session, a, k, t, now),
                escalate=lambda a, why: self.life.escalate(session, a, now, why),
                windows=windows,
                enqueue=self._enqueue or outbox_enqueue,
                sent=self.notifications,
            ))

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


#: The history kinds after which a ticket owes a notice (see ``set_notice``).
_OWING: Final = frozenset({"fired", "reopened", "resolved", "escalated", "acknowledged",
                           "unmuted"})


def _wake_for_notices(changes: Sequence[AlertChange], config: AlertConfig,
                      wake: Callable[[datetime], None]) -> None:
    """A notice is owed: wake the ticker when its lesson group wait ends, so fault to
    outbox never waits for the next whole tick (one woken early for a group outside a
    lesson finds nothing due and costs one pass)."""
    owed = [change.at for change in changes if change.kind in _OWING]
    if owed:
        wake(min(owed) + timedelta(seconds=config.lesson_group_wait_s))
