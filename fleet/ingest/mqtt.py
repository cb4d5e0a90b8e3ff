"""The fleet's MQTT 5 ingest: subscribe to every device, acknowledge what is durable.

Subscriptions (re-sent on every connect, whatever the broker remembers):

* ``PREFIX/dev/+/status`` as a normal subscription on every fleet process.  MQTT 5 never
  delivers retained messages on shared subscriptions (spec 4.8.2), and the retained
  status is how a (re)started fleet learns which devices are online; status traffic is one
  message per connect/disconnect, so every process keeping the full picture costs little.
  Consumers that act on status (alert rules) must therefore be idempotent across
  processes (they dedupe by fingerprint in the database).
* telemetry, event, check and cmd/result: plainly by default, or as
  ``$share/<group>/...`` when ``share_group`` is set, so several fleet processes split
  that load (the broker gives each message to one).  Mosquitto 2.0 drops the queued
  messages of a persistent session's ``$share`` subscription when the broker restarts;
  a plain subscription's it keeps.  Hence the default: restart safety over scale-out.
* this process's own lag probe topic (``fleet.ingest.lag``), plainly.

The session is persistent (a fixed client id, clean start off, MQTT 5 session expiry)
and messages are acknowledged by hand once durable (``fleet.ingest.dispatch``), so a
fleet that restarts, crashes or loses its connection gets from the broker whatever it had
not yet handled.  Commands go out on a second connection (``fleet.ingest.commands``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.contract import QOS, Kind, subscription, utcnow
from fleet.db.base import SessionFactory
from fleet.ingest.commands import CommandLink
from fleet.ingest.config import IngestConfig
from fleet.ingest.connection import Connection
from fleet.ingest.dispatch import Dispatcher, Gate
from fleet.ingest.lag import Lag, probe_topic
from fleet.ingest.validate import Validator, load_enabled_devices
from fleet.metrics import Sample
from fleet.sinks import Durable, MessageSink, Sent

__all__ = ["MqttIngest", "client_id_of", "create_ingest"]

log = logging.getLogger(__name__)

_SHARED_KINDS = (Kind.TELEMETRY, Kind.EVENT, Kind.CHECK, Kind.CMD_RESULT)
_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason "Session taken over"


def client_id_of(config: IngestConfig) -> str:
    """The configured client id, else one from the host and the instance name: the same
    after a restart (the session is persistent), different for each process."""
    return config.client_id or f"syncclass-fleet-{socket.gethostname()}-{config.instance}"


class MqttIngest:
    """Feeds the dispatcher from the broker; also the fleet's ``Publisher``."""

    def __init__(self, config: IngestConfig, dispatcher: Dispatcher) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.client_id = client_id_of(config)
        self._connection = Connection(config, self.client_id, "ingest-mqtt", clean_start=False,
                                      properties=self._connect_properties, manual_ack=True)
        client = self._connection.client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.commands = CommandLink(config, f"{self.client_id}-cmd")
        self._probe_topic = probe_topic(config.prefix, self.client_id)
        self._ready = threading.Event()
        self._sub_mid: int | None = None
        # Bumped when the broker had no session for us: mids of before mean nothing now.
        self._generation = 0
        self.sessions_lost = 0

    # ------------------------------------------------------------ life-cycle

    def start(self) -> None:
        self.dispatcher.start(acker=self._ack, each_cut=self._probe)
        self.commands.start()
        self._connection.start()

    def close(self, timeout: float = 20.0) -> None:
        """Stop within about ``timeout`` seconds, whatever the backlog: what was handled
        is made durable and acknowledged, the rest stays with the broker's session."""
        self.dispatcher.close(timeout * 0.7)
        self._connection.close(timeout * 0.15)
        self.commands.close(timeout * 0.15)
        self._ready.clear()

    def reload_devices(self) -> None:
        """Re-read the enabled devices after an inventory change."""
        self.dispatcher.validator.reload_devices()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once connected and every subscription is acknowledged."""
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def lag(self) -> Lag:
        """How far behind the broker this process is (``caught_up_to``)."""
        return self.dispatcher.lag

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        return props

    def _ack(self, mid: int, qos: int, generation: int) -> None:
        if generation == self._generation:
            self._connection.client.ack(mid, qos)

    def _probe(self) -> None:
        self.commands.publish(self._probe_topic, self.lag.probe(), qos=1)

    # ------------------------------------------------------------ paho callbacks

    def subscriptions(self) -> list[tuple[str, int]]:
        prefix, group = self.config.prefix, self.config.share_group or None
        subs = [(subscription(prefix, Kind.STATUS), QOS[Kind.STATUS])]
        subs += [(subscription(prefix, kind, group), QOS[kind]) for kind in _SHARED_KINDS]
        subs.append((self._probe_topic, 1))
        return subs

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self._connection.connect_failures += 1
            log.error("MQTT broker %s refused the connection: %s", self.config.url, reason)
            return
        self._connection.connects += 1
        if not flags.session_present:
            self._generation += 1
            if self._connection.connects > 1:
                self.sessions_lost += 1
                log.warning("MQTT broker %s had no session for %s: what it had queued for "
                            "this process is gone", self.config.url, self.client_id)
        log.info("MQTT connected to %s as %s", self.config.url, self.client_id)
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
        if reason.value == _TAKEN_OVER:
            log.error("MQTT broker %s gave the session %s to another connection: two fleet "
                      "processes share one client id; give each its own [mqtt] instance",
                      self.config.url, self.client_id)
        elif self._connection.running:
            log.warning("MQTT connection to %s lost: %s", self.config.url, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.dispatcher.submit(message.topic, bytes(message.payload), message.mid,
                               message.qos, self._generation,
                               probe=message.topic == self._probe_topic)

    # ------------------------------------------------------------ Publisher

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_sent: Sent | None = None) -> None:
        """Send (or queue until reconnected) one message on the command connection."""
        self.commands.publish(topic, payload, qos, retain, on_sent)

    def samples(self) -> Iterable[Sample]:
        yield Sample("syncclass_ingest_connected", "1 while subscribed to the broker",
                     1 if self.connected else 0, "gauge")
        yield Sample("syncclass_ingest_connects_total", "Successful MQTT connects",
                     self._connection.connects)
        yield Sample("syncclass_ingest_connect_failures_total", "Failed MQTT connect attempts",
                     self._connection.connect_failures)
        yield Sample("syncclass_ingest_sessions_lost_total",
                     "Reconnects that found no session at the broker (its queue was lost)",
                     self.sessions_lost)
        yield from self.commands.samples()
        yield from self.dispatcher.samples()

    # Kept for callers that knew the network counters on the ingest itself.
    @property
    def connects(self) -> int:
        return self._connection.connects

    @property
    def connect_failures(self) -> int:
        return self._connection.connect_failures


def create_ingest(
    config: IngestConfig,
    sessions: SessionFactory,
    sinks: Sequence[MessageSink],
    gate: Gate | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_unknown: Callable[[str, str], None] | None = None,
    durable: Sequence[Durable] = (),
) -> MqttIngest:
    """The ingest for the enabled devices of the inventory, feeding ``sinks`` in order.

    Pass ``fleet.state.DeviceStates`` as ``gate`` (duplicate filter) and as the first
    sink, so that every later sink sees a state that already includes the message;
    ``clock`` is the fleet's, which each message's ``ts`` is judged against;
    ``on_unknown`` hears of devices refused as unknown or disabled; ``durable`` are the
    sinks that write later (time series first, then device state), which every
    acknowledgement waits for.
    """
    validator = Validator(
        config.prefix, lambda: load_enabled_devices(sessions), config.log_every_s,
        clock=clock, ts_behind_s=config.ts_behind_s, ts_ahead_s=config.ts_ahead_s,
        on_unknown=on_unknown,
    )
    dispatcher = Dispatcher(validator, sinks, gate, config.queue_size, durable,
                            config.ack_interval_s, Lag(clock))
    return MqttIngest(config, dispatcher)
