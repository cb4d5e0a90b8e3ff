"""The fleet's sending connection: commands to agents, and the ingest's lag probes.

Commands used to share the ingest's connection, whose paho window (20 unacknowledged)
and socket sat behind the inbound backlog: a Monday wave of thousands of checks reached
the agents in bursts of about twenty, minutes late.  Here they have a connection of their
own with a window sized for a wave (``command_inflight``, capped by the Receive Maximum
the broker grants in CONNACK, since paho does not cap itself), and a command counts as
sent only when the broker acknowledged it (PUBACK), not when paho took it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet.ingest.config import IngestConfig
from fleet.ingest.connection import Connection
from fleet.metrics import Sample
from fleet.sinks import Sent

__all__ = ["CommandLink"]

log = logging.getLogger(__name__)

# Messages paho holds while the broker is away: a wave's worth, bounded.
_QUEUE = 100_000


class CommandLink:
    def __init__(self, config: IngestConfig, client_id: str) -> None:
        self._connection = Connection(config, client_id, "mqtt-commands", clean_start=True,
                                      before_connect=self._set_window)
        self._window = config.command_inflight
        client = self._connection.client
        client.max_queued_messages_set(_QUEUE)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        # Never held while calling paho: paho calls on_publish holding its own lock.
        self._lock = threading.Lock()
        # Every message in flight, with whom to tell (None: nobody); and the answers
        # that came before publish() could note the message (the network thread is quick).
        self._waiting: dict[int, Sent | None] = {}
        self._early: dict[int, bool] = {}
        self.acked = 0
        self.refused = 0
        self.granted = self._window

    def start(self) -> None:
        self._connection.start()

    def close(self, timeout: float = 5.0) -> None:
        self._connection.close(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_sent: Sent | None = None) -> None:
        """Hand one message to the connection (queued while it is down); ``on_sent``
        hears the broker's answer, on the network thread."""
        info = self._connection.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._waiting[info.mid] = on_sent
        if early is not None and on_sent is not None:
            self._tell(on_sent, early)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                    props: Properties | None) -> None:
        if reason.is_failure:
            self._connection.connect_failures += 1
            log.error("MQTT broker %s refused the command connection: %s",
                      self._connection.config.url, reason)
            return
        self._connection.connects += 1
        granted = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self.granted = min(self._window, int(granted)) if granted else self._window
        if self.granted < self._window:
            log.warning("the broker takes %d unacknowledged commands at a time, not %d "
                        "(raise its max_inflight_messages for a Monday wave)",
                        self.granted, self._window)
        if client.max_inflight_messages > self.granted:
            # paho neither caps itself nor takes a new window on an open connection.
            client.disconnect()

    def _set_window(self) -> None:
        self._connection.client.max_inflight_messages_set(self.granted)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode,
                    _p: Any) -> None:
        ok = not reason.is_failure
        if ok:
            self.acked += 1
        else:
            self.refused += 1
            log.error("the broker refused a message of the fleet: %s", reason)
        with self._lock:
            if mid not in self._waiting:
                self._early[mid] = ok
                return
            told = self._waiting.pop(mid)
        if told is not None:
            self._tell(told, ok)

    @staticmethod
    def _tell(told: Sent, ok: bool) -> None:
        try:
            told(ok)
        except Exception:
            log.exception("a sent-callback failed")

    def samples(self) -> list[Sample]:
        return [
            Sample("syncclass_commands_acked_total",
                   "Messages of the command connection the broker acknowledged", self.acked),
            Sample("syncclass_commands_refused_total",
                   "Messages of the command connection the broker refused", self.refused),
            Sample("syncclass_commands_window", "Unacknowledged commands allowed at a time",
                   self.granted, "gauge"),
        ]
