"""Helpers for the agent runtime tests: configs, a recording subscriber, signed commands."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.app import Agent
from agent.compat import UTC
from agent.config import AgentConfig, parse_config
from agent.contract import COMMAND_SCHEMA, b64, command_signing_bytes, envelope, format_ts

__all__ = ["Message", "Subscriber", "make_config", "public_key", "running_agent", "sign"]

PREFIX = "syncclass/v1"
Message = tuple[str, dict[str, Any], bool]  # topic, payload, retained


def public_key(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def make_config(tmp_path: Path, url: str, device_id: str = "room-1", **tables: Any) -> AgentConfig:
    """A fast test config: 1 s interval, small backoff, simulated hardware."""
    data: dict[str, Any] = {
        "device_id": device_id,
        "mqtt": {"url": url, "backoff_min_s": 0.1, "backoff_max_s": 0.5},
        "hardware": {"backend": "simulated"},
        "agent": {"interval": 1, "state_dir": str(tmp_path / f"state-{device_id}")},
    }
    for name, table in tables.items():
        data[name] = {**data.get(name, {}), **table} if isinstance(table, dict) else table
    return parse_config(data)


def sign(key: Ed25519PrivateKey, device_id: str, name: str, args: dict[str, Any] | None = None,
         *, issued: datetime | None = None, valid_s: float = 300,
         nonce: str | None = None, **override: Any) -> dict[str, Any]:
    """A command as the fleet signs it; ``override`` changes fields before signing."""
    issued = issued or datetime.now(UTC)
    cmd: dict[str, Any] = {
        **envelope(device_id, None),
        "schema": COMMAND_SCHEMA,
        "id": uuid.uuid4().hex,
        "name": name,
        "args": args or {},
        "issued_at": format_ts(issued),
        "expires_at": format_ts(issued + timedelta(seconds=valid_s)),
        "nonce": nonce or uuid.uuid4().hex,
        **override,
    }
    cmd["sig"] = b64(key.sign(command_signing_bytes(cmd)))
    return cmd


class Subscriber:
    """An MQTT 5 client recording every JSON message on ``topics``."""

    def __init__(self, port: int, topics: list[str], *, client_id: str | None = None,
                 persistent: bool = False, username: str | None = None,
                 password: str | None = None, ca_file: Path | None = None) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600 if persistent else 0
        self._connected = threading.Event()
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=not persistent,
                            properties=props)
        self.client.loop_start()
        assert self._connected.wait(10), "subscriber could not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        for t in self._topics:
            client.subscribe(t, qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload) if msg.payload else {}
        except json.JSONDecodeError:
            payload = {"raw": msg.payload.decode(errors="replace")}
        with self._cond:
            self.messages.append((msg.topic, payload, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Message], bool], timeout: float = 10.0,
                 count: int = 1) -> list[Message]:
        """The first ``count`` messages matching ``pred``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting; got {self.messages[-5:]}"
                self._cond.wait(left)

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def running_agent(config: AgentConfig, **kwargs: Any) -> Iterator[Agent]:
    """An agent running in a thread, stopped cleanly at the end."""
    agent = Agent(config, **kwargs)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert agent.link.wait_connected(10), f"agent never connected: {agent.link.last_error}"
        yield agent
    finally:
        agent.stop()
        thread.join(10)
        assert not thread.is_alive(), "agent did not stop"
