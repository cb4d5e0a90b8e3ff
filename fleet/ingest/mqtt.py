"""The fleet's MQTT 5 connection: subscribe to every device, publish commands.

Subscriptions (re-sent on every connect, whatever the broker remembers):

* ``PREFIX/dev/+/status`` as a normal subscription on every fleet process.  MQTT 5 never
  delivers retained messages on shared subscriptions (spec 4.8.2), and the retained
  status is how a (re)started fleet learns which devices are online; status traffic is one
  message per connect/disconnect, so every process keeping the full picture costs little.
  Consumers that act on status (alert rules) must therefore be idempotent across
  processes (they dedupe by fingerprint in the database).
* telemetry, event, check and cmd/result as ``$share/<group>/...`` when ``share_group`` is
  set, so several fleet processes split that load: the broker gives each message to one.

The paho network thread is ours (``loop()`` in a loop) rather than paho's, so reconnects
use exponential backoff with jitter: a broker restart is not followed by every fleet
process of a province reconnecting in the same millisecond.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.contract import QOS, Kind, subscription, utcnow
from fleet.db.base import SessionFactory
from fleet.ingest.config import IngestConfig
from fleet.ingest.dispatch import Dispatcher, Gate
from fleet.ingest.validate import Validator, load_enabled_devices
from fleet.metrics import Sample
from fleet.sinks import MessageSink

__all__ = ["MqttIngest", "backoff_delay", "create_ingest"]

log = logging.getLogger(__name__)

_SHARED_KINDS = (Kind.TELEMETRY, Kind.EVENT, Kind.CHECK, Kind.CMD_RESULT)


def backoff_delay(
    attempt: int, low: float, high: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff capped at ``high``, with jitter in [half, full] of the step."""
    step = min(high, low * 2 ** min(attempt, 30))
    return float(step * (0.5 + 0.5 * rng()))


def _leave_writes_to_the_loop(_client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
    pass


class MqttIngest:
    """Feeds the dispatcher from the broker; also the fleet's ``Publisher``."""

    def __init__(
        self,
        config: IngestConfig,
        dispatcher: Dispatcher,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self._rng = rng
        parts = urlsplit(config.url)
        self._tls = parts.scheme == "mqtts"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if self._tls else 1883)
        self._persistent = bool(config.client_id)
        client_id = config.client_id or (
            f"syncclass-fleet-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        if config.username:
            self._client.username_pw_set(config.username, config.password or None)
        if self._tls:
            self._client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None)
        self._client.max_queued_messages_set(10_000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        # Without paho's own thread, publish() from another thread would write to the
        # socket itself, concurrently with our loop; with a write hook registered paho
        # only queues the packet and wakes our loop, which does all the writing.
        self._client.on_socket_register_write = _leave_writes_to_the_loop
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._sub_mid: int | None = None
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.connect_failures = 0

    # ------------------------------------------------------------ life-cycle

    def start(self) -> None:
        self.dispatcher.start()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ingest-mqtt", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        self.dispatcher.close()

    def reload_devices(self) -> None:
        """Re-read the enabled devices after an inventory change."""
        self.dispatcher.validator.reload_devices()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once connected and every subscription is acknowledged."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            before = self.connects
            try:
                self._client.connect(
                    self._host,
                    self._port,
                    keepalive=self.config.keepalive,
                    clean_start=not self._persistent,
                    properties=self._connect_properties(),
                )
                while not self._stop.is_set():
                    if self._client.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                        break
                else:
                    # Closing: say goodbye on this thread, which owns the socket.
                    self._client.disconnect()
                    self._client.loop(timeout=0.2)
            except Exception as exc:  # the ingest must outlive any network trouble
                self.connect_failures += 1
                log.warning("MQTT connection to %s failed: %s", self.config.url, exc)
            self._ready.clear()
            if self._stop.is_set():
                return
            attempt = 0 if self.connects > before else attempt + 1
            delay = backoff_delay(
                attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
            )
            log.info("MQTT reconnect to %s in %.1fs", self.config.url, delay)
            self._stop.wait(delay)

    def _connect_properties(self) -> Properties | None:
        if not self._persistent:
            return None
        # A restarted fleet with a fixed client id finds what arrived while it was down.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        return props

    # ------------------------------------------------------------ paho callbacks

    def subscriptions(self) -> list[tuple[str, int]]:
        prefix, group = self.config.prefix, self.config.share_group or None
        subs = [(subscription(prefix, Kind.STATUS), QOS[Kind.STATUS])]
        subs += [(subscription(prefix, kind, group), QOS[kind]) for kind in _SHARED_KINDS]
        return subs

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.connect_failures += 1
            log.error("MQTT broker %s refused the connection: %s", self.config.url, reason)
            return
        self.connects += 1
        log.info("MQTT connected to %s", self.config.url)
        result, mid = client.subscribe(
            [(flt, SubscribeOptions(qos=qos)) for flt, qos in self.subscriptions()]
        )
        self._sub_mid = mid if result == mqtt.MQTT_ERR_SUCCESS else None

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("MQTT broker refused subscriptions: %s", ", ".join(refused))
        self._ready.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._ready.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection to %s lost: %s", self.config.url, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.dispatcher.submit(message.topic, bytes(message.payload))

    # ------------------------------------------------------------ Publisher

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Send (or queue until reconnected) one message; paho's queue is bounded."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def samples(self) -> Iterable[Sample]:
        yield Sample("syncclass_ingest_connected", "1 while subscribed to the broker",
                     1 if self.connected else 0, "gauge")
        yield Sample("syncclass_ingest_connects_total", "Successful MQTT connects", self.connects)
        yield Sample("syncclass_ingest_connect_failures_total", "Failed MQTT connect attempts",
                     self.connect_failures)
        yield from self.dispatcher.samples()


def create_ingest(
    config: IngestConfig,
    sessions: SessionFactory,
    sinks: Sequence[MessageSink],
    gate: Gate | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_unknown: Callable[[str, str], None] | None = None,
) -> MqttIngest:
    """The ingest for the enabled devices of the inventory, feeding ``sinks`` in order.

    Pass ``fleet.state.DeviceStates`` as ``gate`` (duplicate filter) and as the first
    sink, so that every later sink sees a state that already includes the message;
    ``clock`` is the fleet's, which each message's ``ts`` is judged against;
    ``on_unknown`` hears of devices refused as unknown or disabled.
    """
    validator = Validator(
        config.prefix, lambda: load_enabled_devices(sessions), config.log_every_s,
        clock=clock, ts_behind_s=config.ts_behind_s, ts_ahead_s=config.ts_ahead_s,
        on_unknown=on_unknown,
    )
    return MqttIngest(config, Dispatcher(validator, sinks, gate, config.queue_size))
