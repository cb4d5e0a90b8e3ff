"""Shared pieces of the checks and actions tests: a timetable world in SQLite and real
MQTT parts: the fleet's own ingest (publisher of commands, and the path of the devices'
answers to the fleet's sinks) and classroom devices that verify commands as an agent does."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.commands import CommandError, CommandVerifier, NonceStore
from agent.config import CommandsConfig
from agent.contract import DEFAULT_PREFIX, Kind, decode, encode, envelope, topic
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory, session_scope
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
from fleet.ingest import IngestConfig, MqttIngest, create_ingest
from fleet.sinks import MessageSink, NullSink
from tests.fleet.db import fresh_db
from tests.waiting import wait_until

__all__ = [
    "MONDAY_0800",
    "MqttDevice",
    "Relay",
    "Sniffer",
    "World",
    "check_payload",
    "fleet_ingest",
    "wait_until",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 08:00 on a Monday in Zhejiang: when every county's first lessons start.
MONDAY_0800 = datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI)


@dataclass
class World:
    """A county with town classrooms ("main-N") and rural ones ("recv-N"), one device each."""

    sessions: SessionFactory
    classrooms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, tmp_path: Path, url: str | None = None) -> World:
        """On SQLite in ``tmp_path``, or on the empty database at ``url``."""
        world = cls(fresh_db(tmp_path, url))
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


class Relay(NullSink):
    """The ingest's sink that passes checks and command results on to ``sinks``.

    The fleet's components need the ingest (their publisher) before the ingest can be
    given them as sinks, and a test may swap them ("a restarted fleet") mid-way."""

    def __init__(self) -> None:
        self.sinks: list[MessageSink] = []

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.on_check(device_id, payload)

    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.on_cmd_result(device_id, payload)


def _started(ingest: MqttIngest) -> MqttIngest:
    ingest.start()
    assert ingest.wait_ready(10), "the fleet's ingest did not subscribe"
    return ingest


def _config(broker: Mosquitto) -> IngestConfig:
    # One fleet process: a plain subscription, no shared-subscription delivery rules.
    return IngestConfig(url=broker.url, share_group="", reconnect_min_s=0.05,
                        reconnect_max_s=0.5)


def fleet_ingest(broker: Mosquitto, sessions: SessionFactory,
                 sinks: Sequence[MessageSink]) -> MqttIngest:
    """The fleet's real ingest, started: publisher of the commands, and the path of the
    answers of the inventory's enabled devices to ``sinks``."""
    return _started(create_ingest(_config(broker), sessions, sinks))


class MqttDevice:
    """A classroom device: receives commands, verifies them with the agent's own verifier
    (signature, schema, device id, expiry on ``clock``, nonce replay), answers.

    A command the agent would refuse lands in ``forged`` instead of ``commands``."""

    def __init__(self, broker: Mosquitto, device_id: str, public_key_b64: str,
                 clock: Callable[[], datetime], state_dir: Path,
                 allowed_units: Iterable[str] = ()) -> None:
        self.device_id = device_id
        self.nonces = NonceStore(state_dir / f"{device_id}-nonces.db")
        config = CommandsConfig(fleet_public_key=public_key_b64,
                                allowed_units=list(allowed_units))
        self.verifier = CommandVerifier(device_id, config, self.nonces, clock)
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.forged: list[tuple[bytes, CommandError]] = []
        self.seq = 0
        self.client = _client(broker, f"agent-{device_id}")
        self.client.on_message = self._on_message
        _subscribe(self.client, topic(DEFAULT_PREFIX, device_id, Kind.CMD))

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        data = bytes(msg.payload)
        try:
            self.verifier.verify(data)
        except CommandError as refused:
            self.forged.append((data, refused))
            return
        self.commands.put(decode(self.device_id, Kind.CMD, data))

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
        self.nonces.close()


def check_payload(command: dict[str, Any], verdict: str,
                  findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The check part of an agent's answer to a run-check (no envelope)."""
    return {"seq": 1, "verdict": verdict, "probes": {"network": {"ok": verdict == "pass"}},
            "findings": findings or [], "request_id": command["id"],
            "lesson_id": command["args"].get("lesson_id")}
