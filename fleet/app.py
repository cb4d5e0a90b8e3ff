"""The fleet's wiring: the only module that knows every concrete component.

Read top to bottom it is the pipeline: MQTT → validation → sinks (device state, time
series, check scheduler, remote actions, alert rules) → alert life-cycle → notification
outbox → channels; a ticker drives everything that happens because time passes (checks
due before a lesson, unanswered commands, alert delays, reminders and escalations); the
API reads and acts on the same components.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.alerts.engine import AlertEngine
from fleet.api.app import create_api
from fleet.api.deps import Services
from fleet.api.live import Server as LiveServer
from fleet.bandwidth import SECRET_PURPOSE, BandwidthAccess
from fleet.checks.plan import CheckPlanner
from fleet.checks.readiness import lessons_readiness
from fleet.checks.scheduler import CheckScheduler, Unanswered
from fleet.config import FleetConfig
from fleet.db.base import SessionFactory, make_engine, utcnow
from fleet.db.migrate import upgrade
from fleet.dynsec import AdminLogin, DynsecAdmin
from fleet.enrolment import Enrolment
from fleet.expected import ExpectedDevices
from fleet.history import TelemetryHistory
from fleet.ingest.mqtt import client_id_of, create_ingest
from fleet.ingest.strangers import Strangers
from fleet.inventory import DeviceContextCache
from fleet.lease import Lease, LeaseLost
from fleet.liveness import ever_heard, silent_devices
from fleet.metrics import MetricSource
from fleet.notify import build_channels
from fleet.notify.dispatcher import Dispatcher as NotifyDispatcher
from fleet.sinks import Durable, MessageSink, Sent
from fleet.state import DeviceStates
from fleet.ticker import Ticker
from fleet.tsdb import TelemetryWriter

__all__ = ["Fleet", "enrolment_service"]

log = logging.getLogger(__name__)

TICK_S = 1.0
# Behind the broker by less than this (an acknowledgement round and a probe's trip take
# one or two seconds), a message's age is the device's clock, not our queue.
PROMPT_S = 10.0
# How far the shared device states may trail what the other processes heard: each writes
# what it handled before acknowledging it, every ack round; a margin for a slower one.
SHARED_LAG = timedelta(seconds=10)


def enrolment_service(config: FleetConfig, signer: Signer,
                      clock: Callable[[], datetime] = utcnow) -> Enrolment | None:
    """Enrolment through the broker's dynamic security plugin, if ``[enrol]`` is set."""
    if not config.enrol.enabled:
        return None
    login = AdminLogin(config.mqtt.url, config.enrol.admin_username,
                       config.enrol.admin_password, config.mqtt.ca_file)
    return Enrolment(DynsecAdmin(login), config.enrol, prefix=config.mqtt.prefix,
                     mqtt_url=config.mqtt.url, fleet_public_key=signer.public_key_b64,
                     clock=clock)


class Fleet:
    """Every component of one fleet process, started and stopped together."""

    def __init__(self, config: FleetConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        upgrade(config.database.url)
        self.engine = make_engine(config.database.url)
        self.sessions: SessionFactory = sessionmaker(self.engine, expire_on_commit=False)
        # One process of the cluster runs the ticker (fleet.lease); all of them ingest.
        self.lease = Lease(self.sessions, config.lease)

        self.signer = Signer.from_file(config.actions.key_file)
        # A device clock off the fleet's is told to the alert engine (clock_skew).
        self.states = DeviceStates(self.sessions, clock, seq_jump=config.mqtt.seq_jump,
                                   seq_confirm=config.mqtt.seq_confirm,
                                   ts_ahead_s=config.mqtt.ts_ahead_s,
                                   clock_skew_s=config.mqtt.clock_skew_s,
                                   on_clock=self._clock_skew, prompt=self._prompt,
                                   holder=client_id_of(config.mqtt))
        # Where each device is (county … classroom), read by every message's tags and
        # alert texts: one cache, cleared once when the inventory changes.
        self.places = DeviceContextCache()
        self.tsdb = (
            TelemetryWriter(self.sessions, config.tsdb, clock, places=self.places,
                            offset=self.states.clock_offset)
            if config.tsdb.enabled else None
        )
        # Every run-check carries the device's token for the bandwidth test endpoint.
        self.bandwidth = BandwidthAccess(
            self.signer.derive_secret(SECRET_PURPOSE), config.checks.bandwidth_url,
            token_grace_s=config.api.bandwidth_token_grace_s,
            tests_per_window=config.api.bandwidth_tests_per_device,
            window_s=config.api.bandwidth_window_s, clock=clock,
        )
        # Actions publish through the MQTT connection, which is built after the sinks.
        # A manual "re-run check" gets the args of the device's current or next lesson.
        planner = CheckPlanner(config.checks)
        self.actions = Actions(self.sessions, self, self.signer, config.actions, clock,
                               run_check_args=planner.args_for_device, bandwidth=self.bandwidth)
        self.checks = CheckScheduler(self.sessions, self.actions, config.checks, clock,
                                     on_unanswered=self._unanswered)
        # The alert engine wakes the ticker when a notice's wait ends before the next tick.
        self.ticker = Ticker(TICK_S, clock)
        self.alerts = AlertEngine(self.sessions, config.alerts, clock, places=self.places,
                                  checks=config.checks, wake=self.ticker.wake)
        # Agents the broker lets in but the inventory refuses: listed and alerted.
        self.strangers = Strangers(self.sessions, clock, report=self.alerts.stranger)

        # The inventory's expected devices, sent after births (which the states keep).
        self.expected = ExpectedDevices(self.sessions, self.actions, self.states)

        # The device page's charts when no time-series store answers InfluxQL.
        self.history = TelemetryHistory(clock)
        sinks: list[MessageSink] = [self.states, self.history]
        if self.tsdb is not None:
            sinks.append(self.tsdb)
        sinks += [self.checks, self.actions, self.alerts, self.expected]
        # Device states and time-series points are written in the ingest's
        # acknowledgement rounds, points first (fleet.ingest.dispatch says why), so the
        # broker keeps every message until both are.
        durable: list[Durable] = [self.tsdb] if self.tsdb is not None else []
        durable.append(self.states)
        self.mqtt = create_ingest(config.mqtt, self.sessions, sinks, gate=self.states,
                                  clock=clock, on_unknown=self.strangers.seen, durable=durable)
        self.notifier = NotifyDispatcher(
            self.sessions, build_channels(config.notify, clock), config.notify, clock
        )

        sources: list[MetricSource] = [
            self.mqtt, self.states, self.checks, self.actions, self.alerts, self.notifier,
            self.bandwidth, self.strangers, self.lease,
        ]
        if self.tsdb is not None:
            sources.append(self.tsdb)
        self.enrolment = enrolment_service(config, self.signer, clock)
        self.api = create_api(
            Services(
                sessions=self.sessions,
                config=config.api,
                clock=clock,
                states=self.states,
                alerts=self.alerts,
                actions=self.actions,
                enrolment=self.enrolment,
                readiness=lessons_readiness,
                metric_sources=sources,
                mqtt_connected=lambda: self.mqtt.connected,
                coordinator=lambda: self.lease.held,
                inventory_changed=self.reload_inventory,
                bandwidth=self.bandwidth,
                strangers=self.strangers.list,
                history=self.history,
            )
        )
        self._queued_seen = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # The Publisher the actions use.
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_sent: Sent | None = None) -> None:
        self.mqtt.publish(topic, payload, qos, retain, on_sent)

    def _prompt(self) -> bool:
        behind = self.mqtt.lag.behind_s()
        return behind is not None and behind < PROMPT_S

    def _clock_skew(self, device_id: str, offset_s: float, skewed: bool) -> None:
        self.alerts.clock_skew(device_id, offset_s, skewed)

    def _unanswered(self, runs: Sequence[Unanswered]) -> None:
        """Lesson checks nobody answered: a device the fleet has never heard from is
        "never connected", a known one "no answer"."""
        def ever_connected(device_id: str) -> bool:
            # Another process may have heard it since this one loaded the states.
            state = self.states.get(device_id)
            return (state is not None and state.last_seen is not None) or ever_heard(
                self.sessions, device_id)

        self.alerts.unanswered(runs, ever_connected)

    def reload_inventory(self) -> None:
        """After devices were added, moved or disabled: refresh who may publish and where
        each device is, and send changed expected devices to the agents."""
        self.mqtt.reload_devices()
        self.places.clear()
        try:
            self.expected.inventory_changed()
        except Exception:  # the inventory is loaded either way; the next birth sends it
            log.exception("sending the expected devices after an inventory change failed")

    def start(self) -> None:
        if self.tsdb is not None:
            self.tsdb.start()
        self.mqtt.start()
        for name, target in (("ticker", self._tick_loop), ("notify", self._notify_loop)):
            thread = threading.Thread(target=target, name=f"fleet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _notify_loop(self) -> None:
        self.notifier.run(self._stop)

    def tick(self) -> None:
        """Everything that happens because time passed, on the coordinator only (a
        standby ingests and serves); each part fails on its own."""
        if not self.lease.renew():
            try:
                self.alerts.resync()  # a standby still hears clears of others' tickets
            except Exception:
                log.exception("fleet tick: alert index resync failed")
            return
        with self.lease.fenced():
            self._steps()
        # Alerts are queued both here and by the ingest thread between ticks.
        queued = self.alerts.notifications.total()
        if queued != self._queued_seen:
            self._queued_seen = queued
            self.notifier.wake()

    def _steps(self) -> None:
        for name, step in (
            ("checks", self.checks.tick),
            ("actions", self.actions.tick),
            ("stale", self._stale_devices),
            ("strangers", self.strangers.tick),
            ("alerts", self.alerts.tick),
        ):
            try:
                step()
            except LeaseLost as exc:  # nothing of this step was written
                log.warning("fleet tick: %s stopped: %s", name, exc)
                return
            except Exception:
                log.exception("fleet tick: %s failed", name)

    def _stale_devices(self) -> None:
        # The Last Will covers a dead connection; this covers a live connection whose
        # agent has stopped reporting (a wedged process behind a healthy socket).  Silence
        # is judged as of the moment up to which this process has handled everything the
        # broker had for it (its lag probe), not as of now: a backlog (a cold start, a
        # slow database, a reconnect) delays messages, and while disconnected that
        # moment does not move.  Before the first probe came back nothing is judged.
        caught_up = self.mqtt.lag.caught_up_to()
        if caught_up is None:
            return
        # This process's view of a device is a lower bound (the broker may deal its
        # messages among several processes): the shared state has the last word.
        local = self.states.stale(caught_up)
        intervals = {d: s.interval for d in local if (s := self.states.get(d)) is not None}
        for device_id in silent_devices(self.sessions, intervals, caught_up,
                                        self.states.stale_intervals, SHARED_LAG):
            self.alerts.device_silent(device_id)

    def _tick_loop(self) -> None:
        while self.ticker.wait(self._stop):
            self.tick()

    def serve(self) -> None:
        """Run the API in the foreground until interrupted."""
        server = LiveServer(
            uvicorn.Config(
                self.api, host=self.config.http.host, port=self.config.http.port,
                log_level="warning",
                timeout_graceful_shutdown=5,
            )
        )
        server.run()

    def close(self) -> None:
        self._stop.set()
        self.ticker.wake()
        self.notifier.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            self.lease.release()  # a standby takes over at its next tick, not after ttl_s
        except SQLAlchemyError:
            log.exception("fleet: releasing the coordinator lease failed; it expires")
        # A running timetable import finishes (all or nothing); queued ones are dropped.
        self.api.state.services.imports.close()
        self.mqtt.close()
        if self.tsdb is not None:
            self.tsdb.close()
        try:
            self.states.close()  # the final flush, after the ingest has drained
        except SQLAlchemyError:
            # Shutting down while the database is away: the newest device states are
            # lost, the rows keep the last flushed ones, and the next start carries on.
            log.exception("fleet: final device state flush failed")
        finally:
            self.engine.dispose()

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
