"""One MQTT 5 connection of the fleet, on a network thread of our own.

The paho network thread is ours (``loop()`` in a loop) rather than paho's, so reconnects
use exponential backoff with jitter: a broker restart is not followed by every fleet
process of a province reconnecting in the same millisecond.  The ingest and the command
sender each have one (``fleet.ingest.mqtt``, ``fleet.ingest.commands``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from fleet.ingest.config import IngestConfig

__all__ = ["Connection", "backoff_delay"]

log = logging.getLogger(__name__)


def backoff_delay(
    attempt: int, low: float, high: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff capped at ``high``, with jitter in [half, full] of the step."""
    step = min(high, low * 2 ** min(attempt, 30))
    return float(step * (0.5 + 0.5 * rng()))


def _leave_writes_to_the_loop(_client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
    pass


class Connection:
    """A paho client connected, kept connected and closed by a thread of its own."""

    def __init__(
        self,
        config: IngestConfig,
        client_id: str,
        name: str,
        *,
        clean_start: bool,
        properties: Callable[[], Properties | None] = lambda: None,
        before_connect: Callable[[], None] = lambda: None,
        manual_ack: bool = False,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._name = name
        self._clean_start = clean_start
        self._properties = properties
        self._before_connect = before_connect
        self._rng = rng
        parts = urlsplit(config.url)
        tls = parts.scheme == "mqtts"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if tls else 1883)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password or None)
        if tls:
            self.client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None)
        # Without paho's own thread, a call from another thread (publish, ack) would write
        # to the socket itself, concurrently with our loop; with a write hook registered
        # paho only queues the packet and wakes our loop, which does all the writing.
        self.client.on_socket_register_write = _leave_writes_to_the_loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_by = 0.0
        self.connects = 0
        self.connect_failures = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """Started and not being closed."""
        return self._thread is not None and not self._stop.is_set()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (acknowledgements, commands) within ``timeout``, then
        disconnect; the broker keeps a persistent session for the next start."""
        self._close_by = time.monotonic() + timeout
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout + 1)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            before = self.connects
            try:
                self._before_connect()
                self.client.connect(
                    self._host, self._port, keepalive=self.config.keepalive,
                    clean_start=self._clean_start, properties=self._properties(),
                )
                while not self._stop.is_set():
                    if self.client.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                        break
                else:
                    self._goodbye()
            except Exception as exc:  # the fleet must outlive any network trouble
                self.connect_failures += 1
                log.warning("MQTT %s to %s failed: %s", self._name, self.config.url, exc)
            if self._stop.is_set():
                return
            attempt = 0 if self.connects > before else attempt + 1
            delay = backoff_delay(
                attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
            )
            log.info("MQTT %s reconnects to %s in %.1fs", self._name, self.config.url, delay)
            self._stop.wait(delay)

    def _goodbye(self) -> None:
        # Closing, on this thread, which owns the socket: what is queued goes out first.
        while self.client.want_write() and time.monotonic() < self._close_by:
            if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                return
        self.client.disconnect()
        self.client.loop(timeout=0.2)
