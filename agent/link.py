"""The agent's MQTT session: connect, birth and Last Will, drain the spool, receive commands.

One thread owns the paho client (MQTT 5: Mosquitto then answers an ACL-denied publish
with "Not authorized" instead of silently dropping it).  On every connect it takes a new
``session`` number, registers a retained "offline" Last Will carrying it, publishes a
retained "online" birth with the same number and the hardware inventory, subscribes to
the device's ``cmd`` topic and sends the spool in order, with a bounded window of
unacknowledged publishes.  A spool record is deleted on its PUBACK only.

Reconnects back off exponentially with full jitter and reset only after a CONNACK, so a
broker that accepts TCP but refuses sessions is not hammered; refused credentials wait
``auth_retry_s``.  A clean stop publishes "offline" itself before disconnecting.

The thread drives paho as an external event loop (``loop_read``/``loop_write``/
``loop_misc`` around its own ``select``), so that it sleeps until the socket, a new spool
record (``wake``) or the keepalive needs it, instead of waking every tenth of a second.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent import __version__
from agent.config import MqttConfig
from agent.contract import Kind, encode, envelope, topic, utcnow
from agent.spool import Spool

__all__ = ["AUTH_REFUSALS", "Backoff", "Link"]

log = logging.getLogger(__name__)

#: CONNACK reason codes that mean "your credentials", not "try again soon".
# bad user name or password, not authorized, banned, bad authentication method
AUTH_REFUSALS = frozenset({134, 135, 138, 140})
# How often flush() looks at the spool while a reboot waits for it.
_FLUSH_POLL_S = 0.1
# loop_misc must run often enough that a PINGREQ leaves before the broker's 1.5 x keepalive.
_KEEPALIVE_CHECKS = 4


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Link:
    """Keeps a device connected and its spool flowing; ``start()`` it, ``stop()`` it."""

    def __init__(
        self,
        device_id: str,
        config: MqttConfig,
        spool: Spool,
        on_command: Callable[[bytes], None],
        birth: Callable[[], dict[str, Any]] = dict,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.device_id = device_id
        self.config = config
        self.spool = spool
        self._on_command = on_command
        self._birth = birth
        self._rng = rng or random.Random()
        self._clock = clock
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s, self._rng)
        self._status_topic = topic(config.prefix, device_id, Kind.STATUS)
        self._cmd_topic = topic(config.prefix, device_id, Kind.CMD)
        self._stop = threading.Event()
        self._wake = threading.Event()
        # wake() writes a byte here to end the network thread's select() at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._online = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: dict[int, int] = {}  # paho mid -> spool record id
        self._acked: list[int] = []  # record ids acknowledged, deleted once per loop
        self._cursor = 0  # id of the last record handed to paho
        self._refused: ReasonCode | None = None
        self.session = 0
        #: Counters for telemetry (``stats``), logs and tests.
        self.connects = 0
        self.attempts = 0
        self.acked = 0
        self.rejected = 0
        self.last_error = ""
        self.last_rejection = ""
        self.next_delay = 0.0
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id,
                             protocol=mqtt.MQTTv5)
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self.config.password)
        if self.config.tls:
            client.tls_set(ca_certs=str(self.config.ca_file) if self.config.ca_file else None)
        client.max_inflight_messages_set(self.config.max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        # clean_start=False keeps the subscription and queued commands across short drops.
        client.connect_async(self.config.host, self.config.port, self.config.keepalive,
                             clean_start=False, properties=props)
        return client

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish "offline", disconnect and end the thread; records stay in the spool."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self.alive:
            self._wake_r.close()
            self._wake_w.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self._online.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._online.wait(timeout)

    def stats(self) -> dict[str, int]:
        """For telemetry: which connection this is, and publishes the broker refused."""
        return {"session": self.session, "connects": self.connects, "rejected": self.rejected}

    def wake(self) -> None:
        """A record was appended (or stop() was called): send it now."""
        self._wake.set()
        with suppress(BlockingIOError, OSError):  # full: a wake-up is already pending
            self._wake_w.send(b"\0")

    def flush(self, timeout: float) -> bool:
        """Wait until every spooled record is acknowledged (before a reboot)."""
        for _ in range(int(timeout / _FLUSH_POLL_S) + 1):
            if len(self.spool) == 0 and not self._inflight and not self._acked:
                return True
            self._stop.wait(_FLUSH_POLL_S)
        return False

    # ------------------------------------------------------------------ the thread
    def _status(self, state: str, **extra: Any) -> bytes:
        payload = envelope(self.device_id, self.spool.last_seq, self._clock())
        payload.update(state=state, agent_version=__version__, session=self.session, **extra)
        return encode(payload)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.session = self.spool.next_session()
            self.attempts += 1
            self._refused = None
            self._client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
            try:
                self._client.reconnect()
            except (OSError, ssl.SSLError) as exc:
                self._note_error(f"cannot reach {self.config.url}: {exc}")
            else:
                try:
                    self._serve()
                except Exception as exc:  # a bug or a full disk must not end the link
                    log.exception("MQTT session failed")
                    self._online.clear()
                    self._note_error(f"MQTT session failed: {exc}")
            if self._stop.is_set():
                break
            if self._refused is not None and self._refused.value in AUTH_REFUSALS:
                self.next_delay = self._rng.uniform(0.5, 1.0) * self.config.auth_retry_s
                log.error("broker %s refused user %r (%s): fix [mqtt] username/password; "
                          "next try in %.0f s", self.config.url, self.config.username,
                          self._refused, self.next_delay)
            else:
                self.next_delay = self._backoff.next()
                log.info("reconnecting to %s in %.1f s", self.config.url, self.next_delay)
            self._stop.wait(self.next_delay)

    def _serve(self) -> None:
        """Run the connection until it drops or we are told to stop."""
        idle_s = self.config.keepalive / _KEEPALIVE_CHECKS
        while True:
            rc = self._step(idle_s)
            if rc != mqtt.MQTT_ERR_SUCCESS or self._refused is not None:
                self._online.clear()
                return
            self._forget_acked()
            if self._stop.is_set():
                self._say_goodbye()
                return
            if self._online.is_set() and self._wake.is_set():
                self._wake.clear()
                self._pump()

    def _step(self, timeout: float) -> MQTTErrorCode:
        """One turn of paho's external loop: wait for the socket or a wake-up, then serve."""
        sock = self._client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes that select() cannot see.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        writing = [sock] if self._client.want_write() else []
        try:
            readable, writable, _ = select.select([sock, self._wake_r], writing, [],
                                                  0.0 if pending else timeout)
        except (OSError, ValueError, TypeError):  # closed under us: the connection is gone
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            with suppress(BlockingIOError, OSError):
                self._wake_r.recv(4096)
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if sock in readable or pending:
            rc = self._client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and (writable or self._client.want_write()):
            rc = self._client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()
        return rc

    def _forget_acked(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.spool.delete(acked)

    def _pump(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        records = self.spool.after(self._cursor, room)
        if len(records) == room:
            self._wake.set()  # more may be waiting; look again once acks make room
        for record in records:
            info = self._client.publish(topic(self.config.prefix, self.device_id, record.kind),
                                        record.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.error("paho refused record %d: %s", record.id, mqtt.error_string(info.rc))
                return
            # NO_CONN: the connection just dropped; paho keeps the message and resends it.
            self._inflight[info.mid] = record.id
            self._cursor = record.id
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                return

    def _say_goodbye(self) -> None:
        if not self._online.is_set():
            return
        info = self._client.publish(self._status_topic, self._status("offline"), qos=1,
                                    retain=True)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if self._step(max(0.0, deadline - time.monotonic())) != mqtt.MQTT_ERR_SUCCESS:
                break
        self._online.clear()
        self._client.disconnect()
        self._client.loop_write()  # the DISCONNECT packet; the socket closes after it
        self._forget_acked()

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._refused = reason
            self._note_error(f"broker {self.config.url} refused the connection: {reason}")
            return
        self.connects += 1
        self._backoff.reset()
        self.last_error = ""
        # Subscribe before the birth: the broker handles both in order, so a fleet that
        # reacts to "online" with a command finds the subscription in place.
        client.subscribe(self._cmd_topic, qos=1)
        try:
            extra = self._birth()
        except Exception:
            log.exception("building the birth message failed; sending it without inventory")
            extra = {}
        client.publish(self._status_topic, self._status("online", **extra), qos=1, retain=True)
        log.info("connected to %s as %s (session %d)", self.config.url, self.device_id,
                 self.session)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        # Online only once the cmd subscription stands: a command the fleet sends after
        # seeing us online is then never lost.
        if any(r.is_failure for r in reasons):
            log.error("broker refused the subscription to %s: %s", self._cmd_topic, reasons)
        self._online.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        if self._online.is_set():
            self._note_error(f"lost the connection to {self.config.url}: {reason}")
        self._online.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        record_id = self._inflight.pop(mid, None)
        if record_id is None:
            return  # a status message
        if reason.is_failure:
            # Retrying cannot help (an ACL denial): keep the queue moving, say so loudly.
            self.rejected += 1
            self.last_rejection = f"record {record_id}: {reason}"
            log.error("broker refused %s", self.last_rejection)
        else:
            self.acked += 1
        self._acked.append(record_id)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._cmd_topic:
            self._on_command(bytes(msg.payload))
