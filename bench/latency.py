"""Fault to technician: from a camera unplugged in a classroom to the e-mail in the inbox.

Real parts end to end: a private Mosquitto, the whole ``Fleet`` on SQLite (one school,
one technician), one simulated agent reporting every second, and an SMTP server
(aiosmtpd) as the technician's inbox.  The classroom has a lesson starting in 20
minutes: the camera is unplugged in its lead window, where a camera matters, so the
default alert timers of a lesson window apply (camera up-delay 0, lesson group wait
2 s; outside any lesson the camera would be held until the next lesson's first check).
What is measured is that group wait plus the pipeline: the agent's hot-plug event
(immediate), ingest, the alert engine, the fleet's ticker (woken for the group wait's
end, not the next whole tick) and the notification dispatcher (woken by the tick).
Each run clears the fault and waits for the recovery mail before the next.  Then the
agent is stopped (its offline status, as a killed agent's Will) in the lesson window and,
the lesson cancelled, once with no lesson near (up-delay 30 s + group wait 30 s).  The
reference, in the same run and through the same servers, is an MQTT round trip plus one
direct SMTP send.
"""

from __future__ import annotations

import itertools
import queue
import smtplib
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from agent.app import Agent
from agent.config import AgentConfig, CommandsConfig, HardwareConfig, MqttConfig
from agent.config import RuntimeConfig as AgentRuntime
from agent.hardware.scenario import Fault, default_scenario
from agent.hardware.simulated import SimulatedHardware
from fleet import app as fleet_app
from fleet.app import Fleet
from fleet.broker import Mosquitto, free_port
from fleet.config import DatabaseConfig, FleetConfig, HttpConfig
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertEvent, CheckRun, Classroom, Lesson, LessonMode, Notification
from fleet.inventory import load_inventory
from fleet.notify.config import EmailConfig, RateLimit

__all__ = ["run"]

RUNS = 5
LEAD_IN = timedelta(minutes=20)  # the lesson starts this long after the bench does
OFFLINE_RUNS = 3
DEVICE = "bench-school-sync1"
CAMERA = "usb-0000:00:14.0-2"
_DOC: dict[str, Any] = {
    "counties": [{"name": "基准县", "city": "温州市", "schools": [{
        "name": "基准小学", "kind": "rural",
        "classrooms": [{"name": "同步课堂教室", "devices": [{"id": DEVICE}]}],
    }]}],
    "people": [{"username": "bench-tech", "name": "技术员", "role": "school_tech",
                "schools": ["基准小学"], "email": "tech@example.cn"}],
}


@dataclass(frozen=True)
class _Mail:
    at: datetime
    perf: float
    subject: str


class _Inbox:
    """The technician's mailbox: a real SMTP server noting when each mail lands."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: queue.Queue[_Mail] = queue.Queue()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        subject = str(message_from_bytes(envelope.content, policy=default_policy)["Subject"])
        self.mails.put(_Mail(datetime.now(UTC), time.perf_counter(), subject))
        return "250 OK"

    def __enter__(self) -> _Inbox:
        self._controller.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._controller.stop()


def _mqtt_round_trip(port: int, times: int = 20) -> float:
    got = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda *_: got.set()
    client.connect("127.0.0.1", port)
    client.subscribe("bench/rtt", qos=1)
    client.loop_start()
    time.sleep(0.3)  # the SUBACK
    samples = []
    for _ in range(times):
        got.clear()
        started = time.perf_counter()
        client.publish("bench/rtt", b"x" * 1500, qos=1)
        got.wait(5)
        samples.append(time.perf_counter() - started)
    client.disconnect()
    client.loop_stop()
    return statistics.median(samples)


def _smtp_send(inbox: _Inbox, times: int = 5) -> float:
    samples = []
    for i in range(times):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "bench@example.cn", "tech@example.cn", f"ref {i}"
        msg.set_content("参考 reference")
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", inbox.port, timeout=10) as smtp:
            smtp.send_message(msg)
        samples.append(inbox.mails.get(timeout=10).perf - started)
    return statistics.median(samples)


def _config(tmp: Path, broker: Mosquitto, inbox: _Inbox) -> FleetConfig:
    base = FleetConfig()
    return FleetConfig(
        database=DatabaseConfig(url=f"sqlite:///{tmp / 'fleet.db'}"),
        http=HttpConfig(port=free_port()),
        mqtt=replace(base.mqtt, url=broker.url),
        actions=replace(base.actions, key_file=tmp / "fleet.key"),
        # Fresh ticket each run (no reopen), recovery at once: only the firing path counts,
        # on the default timers.
        alerts=replace(base.alerts, down_delay_s=0, reopen_window_s=0,
                       down_delays={**base.alerts.down_delays, "device_offline": 0.0}),
        # Each run mails the one technician twice; the mailbox's rate limit (ten a minute)
        # would turn later runs into digests and time the limit instead of the pipeline.
        notify=replace(base.notify, email=EmailConfig(
            host="127.0.0.1", port=inbox.port, limit=RateLimit(per_window=1000))),
    ).coherent()


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the fleet did not get there in time")
        time.sleep(0.05)


def _components(fleet: Fleet, applied: datetime, mail: _Mail) -> tuple[float, ...]:
    """Seconds: fault→alert fired, fired→outbox, outbox→sent, sent→inbox, and in all."""
    def sent() -> Notification | None:
        with session_scope(fleet.sessions) as session:
            return session.scalars(
                select(Notification).join(Alert).where(
                    Alert.device_id == DEVICE, Notification.kind == "firing",
                    Notification.sent_at.is_not(None))
                .order_by(Notification.id.desc()).limit(1)).first()

    _wait(lambda: (n := sent()) is not None and n.created_at >= applied)
    note = sent()
    assert note is not None and note.sent_at is not None
    with session_scope(fleet.sessions) as session:
        fired = session.scalars(select(AlertEvent.at).where(
            AlertEvent.alert_id == note.alert_id, AlertEvent.kind == "fired")).one()
    # The inbox sees the mail before the dispatcher records it as sent.
    stamps = [applied, fired, note.created_at, min(note.sent_at, mail.at)]
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    return (*steps, (mail.at - applied).total_seconds())


def _runs(fleet: Fleet, inbox: _Inbox, hardware: SimulatedHardware) -> list[tuple[float, ...]]:
    results = []
    poll = fleet.config.notify.poll_interval_s
    for i in range(RUNS):
        # Each run starts right after a dispatcher pass (the recovery mail): spread the
        # faults over the poll interval, or every run would wait a whole one.
        time.sleep(poll * i / RUNS)
        applied = datetime.now(UTC)
        hardware.apply(Fault("camera_unplugged", device=CAMERA))
        mail = inbox.mails.get(timeout=60)
        results.append(_components(fleet, applied, mail))
        hardware.clear("camera_unplugged", CAMERA)
        inbox.mails.get(timeout=60)  # the recovery notice: the ticket is closed
    return results


def _print(results: list[tuple[float, ...]], rtt: float, smtp: float) -> None:
    names = ("fault → alert fired (agent event, MQTT, ingest, engine)",
             "fired → outbox (fleet ticker)", "outbox → mail delivered (notify poll + SMTP)",
             "fault → technician's inbox")
    print(f"  {'interval (s)':<58}{'median':>8}{'min':>8}{'max':>8}")
    for i, name in enumerate(names):
        column = [r[i] for r in results]
        print(f"  {name:<58}{statistics.median(column):>8.3f}{min(column):>8.3f}"
              f"{max(column):>8.3f}")
    total = statistics.median(r[-1] for r in results)
    print(f"  reference: MQTT round trip {rtt * 1000:.1f} ms + direct SMTP send "
          f"{smtp * 1000:.1f} ms = {(rtt + smtp) * 1000:.1f} ms")
    print(f"  ratio fault→inbox / reference: {total / (rtt + smtp):.0f}x")
    share, name = max((statistics.median(r[i] for r in results) / total, names[i])
                      for i in range(len(names) - 1))
    print(f"  largest share of the median: {name} ({share:.0%})")


def _lesson_ahead(fleet: Fleet) -> None:
    """A lesson in the classroom in LEAD_IN; its first check (due at once) answered."""
    with session_scope(fleet.sessions) as session:
        room = session.scalars(select(Classroom)).one()
        start = datetime.now(UTC) + LEAD_IN
        session.add(Lesson(subject="数学", grade="二年级", teacher="王老师", starts_at=start,
                           ends_at=start + timedelta(minutes=40), mode=LessonMode.LIVE,
                           main_classroom_id=room.id))

    def answered() -> bool:
        with session_scope(fleet.sessions) as session:
            return session.scalars(select(CheckRun).where(
                CheckRun.verdict.is_not(None))).first() is not None

    _wait(answered, timeout=60)


class _Classroom:
    """The classroom's agent on the simulated backend, in a thread; stopped, it publishes
    its offline status as it leaves (what a killed agent's Will says at once)."""

    def __init__(self, fleet: Fleet, broker: Mosquitto, tmp: Path,
                 hardware: SimulatedHardware) -> None:
        self._fleet, self._broker, self._tmp, self._hardware = fleet, broker, tmp, hardware
        self._running: tuple[Agent, threading.Thread] | None = None
        self.start()

    def start(self) -> None:
        agent = Agent(AgentConfig(
            device_id=DEVICE, mqtt=MqttConfig(url=self._broker.url),
            hardware=HardwareConfig(backend="simulated"),
            agent=AgentRuntime(interval=1.0, state_dir=self._tmp / "agent"),
            commands=CommandsConfig(fleet_public_key=self._fleet.signer.public_key_b64),
        ), self._hardware)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self._running = agent, thread
        _wait(lambda: (s := self._fleet.states.get(DEVICE)) is not None and s.online
              and s.telemetry_at is not None)

    def stop(self) -> None:
        if self._running is not None:
            agent, thread = self._running
            agent.stop()
            thread.join(10)
            self._running = None


def _offline(fleet: Fleet, inbox: _Inbox, classroom: _Classroom, runs: int) -> list[float]:
    """Seconds from the agent stopping to the offline e-mail, each run back online after."""
    seconds = []
    for _ in range(runs):
        stopped = time.perf_counter()
        classroom.stop()
        mail = inbox.mails.get(timeout=120)
        assert "离线" in mail.subject or "offline" in mail.subject, mail.subject
        seconds.append(mail.perf - stopped)
        classroom.start()
        inbox.mails.get(timeout=120)  # the recovery notice: the ticket is closed
    return seconds


def run() -> None:
    defaults = FleetConfig()
    alerts, notify_poll = defaults.alerts, defaults.notify.poll_interval_s
    print(f"latency: camera unplugged in a lesson's lead window → technician's e-mail, {RUNS} "
          f"runs (agent interval 1 s, fleet tick {fleet_app.TICK_S:g} s, notify poll "
          f"{notify_poll:g} s, default alert timers: camera up-delay "
          f"{alerts.up_delay('camera_missing', in_lesson=True):g} s, lesson group wait "
          f"{alerts.lesson_group_wait_s:g} s)")
    with tempfile.TemporaryDirectory() as name, _Inbox() as inbox, \
            Mosquitto(workdir=Path(name) / "mq") as broker:
        tmp = Path(name)
        rtt, smtp = _mqtt_round_trip(broker.port), _smtp_send(inbox)
        fleet = Fleet(_config(tmp, broker, inbox))
        with session_scope(fleet.sessions) as session:
            load_inventory(session, _DOC)
        fleet.reload_inventory()
        hardware = SimulatedHardware(default_scenario())
        with fleet:
            agent = _Classroom(fleet, broker, tmp, hardware)
            try:
                _lesson_ahead(fleet)
                results = _runs(fleet, inbox, hardware)
                offline_in = _offline(fleet, inbox, agent, OFFLINE_RUNS)
                with session_scope(fleet.sessions) as session:  # no lesson near any more
                    for lesson in session.scalars(select(Lesson)):
                        lesson.cancelled = True
                offline_out = _offline(fleet, inbox, agent, 1)
            finally:
                agent.stop()
    _print(results, rtt, smtp)
    for where, seconds in (("in a lesson window", offline_in), ("no lesson near", offline_out)):
        print(f"  agent stopped → offline e-mail, {where}: median {statistics.median(seconds):.3f}"
              f" s (n = {len(seconds)}), {statistics.median(seconds) / (rtt + smtp):.0f}x the "
              "reference")
    print(f"  Hot-plug events reach the fleet at once; fired → outbox is the lesson group wait "
          f"({alerts.lesson_group_wait_s:g} s).\n  Outside lessons a camera is held until the next "
          f"lesson's first check; an offline PC\n  waits its up-delay "
          f"{alerts.up_delay('device_offline'):g} s + group wait {alerts.group_wait_s:g} s "
          f"(in a lesson window {alerts.up_delay('device_offline', in_lesson=True):g} s + "
          f"{alerts.lesson_group_wait_s:g} s).")
