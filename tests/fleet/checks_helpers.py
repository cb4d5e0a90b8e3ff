"""Shared pieces of the checks and actions tests: a timetable world in SQLite, an
injected clock, and real MQTT parts (the fleet's publisher, classroom devices that
verify signed commands, and a bridge that hands answers to the fleet's sinks)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.contract import (
    DEFAULT_PREFIX,
    Kind,
    command_signing_bytes,
    decode,
    encode,
    envelope,
    parse_topic,
    subscription,
    topic,
    unb64,
)
from fleet.broker import Mosquitto
from fleet.db.base import Base, SessionFactory, make_engine, session_scope
from fleet.db.models import (
    Classroom,
    County,
    Device,
    Lesson,
    LessonMode,
    LessonReceiver,
    School,
    SchoolKind,
)
from fleet.sinks import MessageSink
from tests.waiting import wait_until

__all__ = [
    "MONDAY_0800",
    "Bridge",
    "Clock",
    "FleetPublisher",
    "MqttDevice",
    "Sniffer",
    "World",
    "check_payload",
    "wait_until",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 08:00 on a Monday in Zhejiang: when every county's first lessons start.
MONDAY_0800 = datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI)


class Clock:
    """The injected clock: time moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, when: datetime) -> Clock:
        self.now = when
        return self

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    """A county with town classrooms ("main-N") and rural ones ("recv-N"), one device each."""

    sessions: SessionFactory
    classrooms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, tmp_path: Path, url: str | None = None) -> World:
        """On SQLite in ``tmp_path``, or on the empty database at ``url``."""
        engine = make_engine(url or f"sqlite:///{tmp_path / 'fleet.db'}")
        Base.metadata.create_all(engine)
        world = cls(SessionFactory(bind=engine))
        with session_scope(world.sessions) as s:
            county = County(name="洞头区", city="温州市")
            s.add_all([
                School(county=county, name="城关小学", kind=SchoolKind.TOWN),
                School(county=county, name="鹿西小学", kind=SchoolKind.RURAL),
            ])
        return world

    def classroom(self, name: str, devices: Iterable[str] = (), *, enabled: bool = True) -> int:
        """A classroom with devices whose address is "<device>.lan"."""
        with session_scope(self.sessions) as s:
            school = s.query(School).filter_by(kind=SchoolKind.TOWN if name.startswith(
                "main") else SchoolKind.RURAL).one()
            room = Classroom(school=school, name=name)
            s.add(room)
            s.flush()
            s.add_all(Device(id=d, classroom_id=room.id, address=f"{d}.lan", enabled=enabled)
                      for d in devices)
            self.classrooms[name] = room.id
            return room.id

    def lesson(self, start: datetime, main: str, receivers: Iterable[str],
               mode: LessonMode = LessonMode.LIVE, minutes: int = 40,
               cancelled: bool = False) -> int:
        with session_scope(self.sessions) as s:
            lesson = Lesson(subject="数学", grade="二年级", teacher="王老师", starts_at=start,
                            ends_at=start + timedelta(minutes=minutes), mode=mode,
                            main_classroom_id=self.classrooms[main], cancelled=cancelled,
                            receivers=[LessonReceiver(classroom_id=self.classrooms[r])
                                       for r in receivers])
            s.add(lesson)
            s.flush()
            return lesson.id

    def pair(self, start: datetime, n: int = 1, mode: LessonMode = LessonMode.LIVE) -> int:
        """Classrooms main-n/recv-n with devices m-n/r-n and a lesson joining them."""
        self.classroom(f"main-{n}", [f"m-{n}"])
        self.classroom(f"recv-{n}", [f"r-{n}"])
        return self.lesson(start, f"main-{n}", [f"recv-{n}"], mode)


def _client(broker: Mosquitto, client_id: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", broker.port, keepalive=10)
    client.loop_start()
    assert connected.wait(5), "no CONNACK"
    return client


def _subscribe(client: mqtt.Client, *filters: str) -> None:
    acked = threading.Event()
    client.on_subscribe = lambda *_args: acked.set()
    client.subscribe([(f, 1) for f in filters])
    assert acked.wait(5), "no SUBACK"


class Sniffer:
    """Records the raw payload of every message matching ``filters``."""

    def __init__(self, broker: Mosquitto, *filters: str) -> None:
        self.payloads: list[bytes] = []
        self.client = _client(broker, "test-sniffer")
        self.client.on_message = lambda _c, _u, msg: self.payloads.append(bytes(msg.payload))
        _subscribe(self.client, *filters)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FleetPublisher:
    """The fleet's side of the broker for commands (the ingest's connection in production)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = _client(broker, "fleet-test-publisher")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish refused: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class MqttDevice:
    """A classroom device: receives commands, verifies their Ed25519 signature, answers."""

    def __init__(self, broker: Mosquitto, device_id: str, public_key_b64: str) -> None:
        self.device_id = device_id
        self.key = Ed25519PublicKey.from_public_bytes(unb64(public_key_b64))
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.forged: list[dict[str, Any]] = []  # commands whose signature did not verify
        self.seq = 0
        self.client = _client(broker, f"agent-{device_id}")
        self.client.on_message = self._on_message
        _subscribe(self.client, topic(DEFAULT_PREFIX, device_id, Kind.CMD))

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        command = decode(self.device_id, Kind.CMD, bytes(msg.payload))
        try:
            self.key.verify(unb64(command["sig"]), command_signing_bytes(command))
        except InvalidSignature:
            self.forged.append(command)
            return
        self.commands.put(command)

    def next_command(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.commands.get(timeout=timeout)

    def _send(self, kind: Kind, payload: dict[str, Any]) -> None:
        self.seq += 1
        body = envelope(self.device_id, self.seq) | payload
        info = self.client.publish(topic(DEFAULT_PREFIX, self.device_id, kind), encode(body),
                                   qos=1)
        info.wait_for_publish(5)

    def result(self, command: dict[str, Any], ok: bool = True, **extra: Any) -> None:
        self._send(Kind.CMD_RESULT, {"id": command["id"], "ok": ok, **extra})

    def check(self, command: dict[str, Any], verdict: str,
              findings: list[dict[str, Any]] | None = None) -> None:
        self._send(Kind.CHECK, check_payload(command, verdict, findings))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_payload(command: dict[str, Any], verdict: str,
                  findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The check part of an agent's answer to a run-check (no envelope)."""
    return {"seq": 1, "verdict": verdict, "probes": {"network": {"ok": verdict == "pass"}},
            "findings": findings or [], "request_id": command["id"],
            "lesson_id": command["args"].get("lesson_id")}


class Bridge:
    """Hands validated check and cmd/result payloads to sinks, as the ingest does."""

    def __init__(self, broker: Mosquitto, sinks: Iterable[MessageSink]) -> None:
        self.sinks = list(sinks)
        self.handled = 0
        self.client = _client(broker, "fleet-test-bridge")
        self.client.on_message = self._on_message
        _subscribe(self.client, subscription(DEFAULT_PREFIX, Kind.CHECK),
                   subscription(DEFAULT_PREFIX, Kind.CMD_RESULT))

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        device_id, kind = parse_topic(DEFAULT_PREFIX, msg.topic)
        payload = decode(device_id, kind, bytes(msg.payload))
        for sink in self.sinks:
            if kind is Kind.CHECK:
                sink.on_check(device_id, payload)
            else:
                sink.on_cmd_result(device_id, payload)
        self.handled += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
