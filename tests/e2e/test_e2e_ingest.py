"""Malformed and spoofed MQTT payloads are refused and counted while the service keeps
working; a device's credentials cannot publish under another device's topics."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.contract import DEFAULT_PREFIX, MAX_PAYLOAD_BYTES, Kind, envelope, topic
from fleet.broker import Mosquitto
from fleet.dynsec import DynsecAdmin
from tests.e2e.world import (
    FLEET_PASSWORD,
    LUXI,
    MORNING,
    SHIYAN,
    World,
    device_password,
    sample_value,
    wait_until,
)


class RawClient:
    """A hand-driven MQTT 5 client that remembers the broker's answer to each publish."""

    def __init__(self, broker: Mosquitto, username: str, password: str, client_id: str) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(username, password)
        self._client.on_publish = self._on_publish
        self._acks: dict[int, ReasonCode] = {}
        self._lock = threading.Lock()
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            self._acks[mid] = reason

    def publish(self, device_id: str, kind: Kind, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self._client.publish(topic(DEFAULT_PREFIX, device_id, kind), payload, qos=1)
        return wait_until(f"the broker's PUBACK of {device_id}/{kind.value}",
                          lambda: self._acks.get(info.mid))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _telemetry(topic_device: str, payload_device: str | None = None, **changes: Any) -> bytes:
    payload = envelope(payload_device or topic_device, 7, MORNING) | {
        "interval": 1, "sections": {"cameras": {"ok": True, "devices": []}}}
    payload.update(changes)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


def test_bad_and_spoofed_payloads_are_refused_and_counted(world: World) -> None:
    fleet = world.start_fleet()
    world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    accepted_before = sample_value(fleet.mqtt.samples(), "syncclass_ingest_accepted_total",
                                   kind="telemetry")
    # The fleet's own client may only send commands: its broker role reads everything and
    # writes nothing a device would.
    fleet_client = RawClient(world.broker, "fleet", FLEET_PASSWORD, "e2e-fleet-client")
    try:
        assert fleet_client.publish(LUXI, Kind.TELEMETRY, _telemetry(LUXI)).getName() == (
            "Not authorized")
    finally:
        fleet_client.close()
    # An operator's tool whose broker role may write anywhere under the prefix.
    DynsecAdmin(world.broker.admin_login).call([
        {"command": "createRole", "rolename": "e2e-writer", "acls": [
            {"acltype": "publishClientSend", "topic": f"{DEFAULT_PREFIX}/#", "allow": True}]},
        {"command": "createClient", "username": "e2e-tool", "password": "e2e-tool-pw",
         "roles": [{"rolename": "e2e-writer"}]},
    ])
    admin = RawClient(world.broker, "e2e-tool", "e2e-tool-pw", "e2e-fleet-tool")
    # With 鹿西's credentials, as from a stolen or tampered classroom PC.
    intruder = RawClient(world.broker, LUXI, device_password(LUXI), "e2e-luxi-intruder")
    try:
        ok = ReasonCode(PacketTypes.PUBACK, "Success")
        assert admin.publish(LUXI, Kind.TELEMETRY, b"{not json") == ok
        assert admin.publish(LUXI, Kind.TELEMETRY, _telemetry(LUXI, schema=3)) == ok
        assert admin.publish(LUXI, Kind.TELEMETRY, _telemetry(LUXI, sections=None)) == ok
        assert admin.publish(LUXI, Kind.TELEMETRY, _telemetry(LUXI, SHIYAN)) == ok
        assert admin.publish("ghost-sync9", Kind.TELEMETRY, _telemetry("ghost-sync9")) == ok
        oversize = _telemetry(LUXI, padding="x" * MAX_PAYLOAD_BYTES)
        assert admin.publish(LUXI, Kind.TELEMETRY, oversize) == ok

        # A well-formed message posing as 洞头实验: the broker's ACL stops it.
        spoof = intruder.publish(SHIYAN, Kind.TELEMETRY, _telemetry(SHIYAN))
        assert spoof.is_failure and spoof.getName() == "Not authorized"
        # Commands only come from the fleet, even to the classroom itself.
        forged = intruder.publish(LUXI, Kind.CMD, b'{"name": "reboot"}')
        assert forged.getName() == "Not authorized"
        assert intruder.publish(LUXI, Kind.EVENT, b"\xff\xfe") == ok
        assert intruder.publish(LUXI, Kind.TELEMETRY, _telemetry(LUXI, SHIYAN)) == ok
    finally:
        admin.close()
        intruder.close()

    expected = {"bad-json": 2, "bad-schema": 1, "missing-field": 1, "device-mismatch": 2,
                "unknown-device": 1, "too-large": 1}

    def refused() -> dict[str, float]:
        samples = list(fleet.mqtt.samples())
        return {reason: sample_value(samples, "syncclass_ingest_refused_total", reason=reason)
                for reason in expected}

    wait_until("every bad message counted", lambda: refused() == expected)
    assert dict(fleet.mqtt.dispatcher.validator.refused) == expected
    assert fleet.states.get(SHIYAN) is None  # the spoof never reached the fleet

    # The real agent's next telemetry still goes through, untouched by the fakes.
    state = world.wait_fresh_telemetry(LUXI)
    assert [d["name"] for d in state.telemetry["sections"]["cameras"]["devices"]] == [
        "Teacher camera", "Student camera"]
    assert sample_value(fleet.mqtt.samples(), "syncclass_ingest_accepted_total",
                        kind="telemetry") > accepted_before
