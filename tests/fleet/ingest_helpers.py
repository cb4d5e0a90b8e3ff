"""Shared pieces of the ingest, state and time-series tests: an inventory, device
clients that speak the wire contract, and a sink that records what it is given."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.contract import DEFAULT_PREFIX, Kind, encode, envelope, topic
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import Classroom, County, Device, Pair, PairMember, School, SchoolKind
from fleet.ingest import IngestConfig, MqttIngest, create_ingest
from fleet.sinks import MessageSink, NullSink
from fleet.state import DeviceStates
from tests.fleet.db import fresh_db
from tests.waiting import wait_until

__all__ = [
    "DeviceClient",
    "Recorder",
    "close_ingests",
    "ingests_closed",
    "inventory_db",
    "make_ingest",
    "status",
    "telemetry",
    "wait_until",
]

# What a v2 agent sends: every section carries its findings (the decoder leaves these as
# they are, so a sink is given exactly what was sent).
SECTIONS: dict[str, Any] = {
    "system": {"ok": True, "cpu_pct": 12.5, "mem_pct": 40, "disk_pct": 55.0, "temp_c": None,
               "uptime_s": 3600, "boot_time": "2026-11-23T07:00:00Z", "clock_synced": True,
               "findings": []},
    "cameras": {"ok": True, "devices": [{"id": "cam0", "name": "Logitech C930e", "ok": True,
                                         "fps": 30}], "findings": []},
    "microphones": {"ok": False, "devices": [{"id": "mic0", "ok": False,
                                              "reason": "microphone_silent",
                                              "message": "无信号 / digital zero",
                                              "level_dbfs": -90.0}],
                    "findings": [{"level": "fail", "reason": "microphone_silent",
                                  "message_zh": "无信号", "message_en": "digital zero",
                                  "entity": "microphone:mic0"}]},
    "network": {"ok": True, "dns_ms": 3.0, "targets": {
        "broker": {"ok": True, "rtt_ms": 1.5, "jitter_ms": 0.2, "loss_pct": 0.0}},
        "findings": []},
    "bandwidth": {"ok": True, "up_mbps": 8.0, "down_mbps": 20.0, "rx_mbps": 1.0,
                  "tx_mbps": 0.5, "measured_at": "2026-11-23T07:30:00Z", "findings": []},
}


def inventory_db(tmp_path: Path, url: str | None = None) -> SessionFactory:
    """洞头区: town school 城关小学 (dev-a) paired with rural 鹿西小学 (dev-b); dev-off disabled.

    In a SQLite file under ``tmp_path`` unless an (empty) database ``url`` is given."""
    sessions = fresh_db(tmp_path, url)
    with session_scope(sessions) as s:
        county = County(name="洞头区", city="温州市")
        town = School(county=county, name="城关小学", kind=SchoolKind.TOWN)
        rural = School(county=county, name="鹿西小学", kind=SchoolKind.RURAL)
        s.add_all([county, town, rural])
        s.flush()
        s.add(Pair(name="洞头结对", town_school_id=town.id,
                   members=[PairMember(school_id=rural.id)]))
        room_a = Classroom(school=town, name="同步课堂教室")
        room_b = Classroom(school=rural, name="三(2)班")
        s.add_all([room_a, room_b])
        s.flush()
        s.add_all([
            Device(id="dev-a", classroom_id=room_a.id),
            Device(id="dev-b", classroom_id=room_b.id),
            Device(id="dev-off", classroom_id=room_b.id, enabled=False),
        ])
    return sessions


def status(device_id: str, state: str, session: int, seq: int, **extra: Any) -> dict[str, Any]:
    return envelope(device_id, seq) | {"state": state, "agent_version": "0.1.0",
                                       "session": session, **extra}


def telemetry(device_id: str, seq: int, when: datetime | None = None,
              sections: dict[str, Any] | None = None) -> dict[str, Any]:
    return envelope(device_id, seq, when or datetime.now(UTC)) | {
        "interval": 15, "sections": SECTIONS if sections is None else sections}


_started: list[MqttIngest] = []


def make_ingest(
    broker: Mosquitto, sessions: SessionFactory, sinks: list[MessageSink],
    gate: DeviceStates | None = None, clock: Callable[[], datetime] = utcnow, **cfg: Any,
) -> MqttIngest:
    """A started, subscribed ingest; an autouse fixture calls ``close_ingests`` after."""
    config = IngestConfig(url=broker.url, reconnect_min_s=0.05, reconnect_max_s=0.5, **cfg)
    ingest = create_ingest(config, sessions, sinks, gate, clock)
    _started.append(ingest)
    ingest.start()
    assert ingest.wait_ready(10), "ingest did not subscribe"
    return ingest


def close_ingests() -> None:
    """Close every ingest ``make_ingest`` started, even a failed test's."""
    while _started:
        _started.pop().close()


@pytest.fixture
def ingests_closed(broker: Mosquitto) -> Iterator[None]:
    """A test module's ``usefixtures``: its ingests are closed before its broker stops."""
    yield
    close_ingests()


class Recorder(NullSink):
    """Records every message it is given, in order, as (kind, device id, payload)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _add(self, kind: str, device_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append((kind, device_id, payload))

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add("status", device_id, payload)

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add("telemetry", device_id, payload)

    def on_event(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add("event", device_id, payload)

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add("check", device_id, payload)

    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add("cmd/result", device_id, payload)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for k, _, p in self.messages if k == kind]


class DeviceClient:
    """A paho MQTT 5 client acting as a classroom device (optionally with a Last Will)."""

    def __init__(self, broker: Mosquitto, device_id: str,
                 will: dict[str, Any] | None = None) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"agent-{device_id}", protocol=mqtt.MQTTv5)
        if will is not None:
            self.client.will_set(self.topic(Kind.STATUS), encode(will), qos=1, retain=True)
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def topic(self, kind: Kind) -> str:
        return topic(DEFAULT_PREFIX, self.device_id, kind)

    def send_raw(self, name: str, data: bytes, retain: bool = False) -> None:
        self.client.publish(name, data, qos=1, retain=retain).wait_for_publish(5)

    def send(self, kind: Kind, payload: dict[str, Any], retain: bool = False) -> None:
        self.send_raw(self.topic(kind), encode(payload), retain)

    def subscribe(self, kind: Kind) -> list[bytes]:
        """Subscribe to one of the device's topics; returns the list its messages go to."""
        got: list[bytes] = []
        acked = threading.Event()
        self.client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
        self.client.on_subscribe = lambda *_args: acked.set()
        self.client.subscribe(self.topic(kind), qos=1)
        assert acked.wait(5), "no SUBACK"
        return got

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crashed agent would."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
