"""Sustained telemetry ingest: the fleet's real pipeline against a bare subscriber.

A separate process publishes every device's telemetry (QoS 1, a bounded window of
unacknowledged messages) to a private Mosquitto.  The fleet side is ``create_ingest``
with the shared subscription, validation against the SQLite inventory, ``DeviceStates``
as gate and first sink, then ``TelemetryWriter`` to a private VictoriaMetrics, then
``AlertEngine``, added one at a time; the devices' births go through it first, untimed,
as they would after a fleet restart.  The reference, in the same run, is a bare paho
MQTT 5 subscriber on the same shared subscription doing ``json.loads`` only.  Rates are
messages from the first received to the last handled.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import sessionmaker

from agent.contract import DEFAULT_PREFIX, Kind, encode, envelope, subscription, topic
from agent.hardware import open_backend
from bench.fleet_size import birth, build_inventory, telemetry_sections
from fleet.alerts.config import AlertConfig
from fleet.alerts.engine import AlertEngine
from fleet.broker import Mosquitto
from fleet.db.base import make_engine
from fleet.ingest.config import IngestConfig
from fleet.ingest.dispatch import Dispatcher
from fleet.ingest.mqtt import create_ingest
from fleet.sinks import MessageSink
from fleet.state import DeviceStates
from fleet.tsdb import TelemetryWriter, TsdbConfig
from tests.fleet.tsdb_server import VictoriaMetrics

__all__ = ["run"]

DEVICES = 500
ROUNDS = 8  # telemetry messages per device for the fast consumers
ALERT_ROUNDS = ROUNDS  # the same load with the alert engine
WINDOW = 1_000  # unacknowledged QoS 1 messages the publisher allows itself
NEEDED = 20_000 / 15  # 20,000 classrooms at the default 15 s interval
_GROUP = "syncclass-fleet"
_TIMEOUT_S = 90.0


def _payloads(ids: list[str], kind: Kind, rounds: int) -> list[tuple[str, bytes]]:
    if kind is Kind.STATUS:
        inventory = open_backend("simulated").inventory()
        return [(topic(DEFAULT_PREFIX, d, kind), encode(birth(d, 0, inventory))) for d in ids]
    sections = telemetry_sections()
    return [
        (topic(DEFAULT_PREFIX, d, kind),
         encode({**envelope(d, seq), "interval": 15.0, "sections": sections}))
        for seq in range(1, rounds + 1)
        for d in ids
    ]


def _publish(port: int, ids: list[str], kind: Kind, rounds: int, out: Any) -> None:
    """Child process: publish as fast as the broker acknowledges; send back seconds."""
    messages = _payloads(ids, kind, rounds)
    done = threading.Condition()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with done:
            acked += 1
            done.notify()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for sent, (name, data) in enumerate(messages):
        with done:
            done.wait_for(lambda n=sent: n - acked < WINDOW)  # type: ignore[misc]
        client.publish(name, data, qos=1, retain=kind is Kind.STATUS)
    with done:
        done.wait_for(lambda: acked == len(messages))
    out.send(time.perf_counter() - started)
    client.disconnect()
    client.loop_stop()


class _Publisher:
    def __init__(self, port: int, ids: list[str], kind: Kind, rounds: int = 1) -> None:
        ctx = mp.get_context("spawn")  # the parent runs MQTT threads: do not fork them
        self._result, send = ctx.Pipe(duplex=False)
        self.count = len(ids) * rounds
        self._proc = ctx.Process(target=_publish,
                                 args=(port, ids, kind, rounds, send))
        self._proc.start()

    def seconds(self) -> float:
        elapsed = float(self._result.recv())
        self._proc.join()
        return elapsed


def _bare(port: int, ids: list[str]) -> tuple[float, float]:
    """The reference consumer: (its msg/s, the publisher's msg/s)."""
    times: list[float] = []
    finished = threading.Event()
    total = len(ids) * ROUNDS

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        json.loads(message.payload)
        times.append(time.perf_counter())
        if len(times) == total:
            finished.set()

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(
        subscription(DEFAULT_PREFIX, Kind.TELEMETRY, _GROUP), options=SubscribeOptions(qos=1))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        subscribed.wait(10)
        publisher = _Publisher(port, ids, Kind.TELEMETRY, rounds=ROUNDS)
        finished.wait(_TIMEOUT_S)
        pub_s = publisher.seconds()
    finally:
        client.disconnect()
        client.loop_stop()
    return (len(times) - 1) / (times[-1] - times[0]), total / pub_s


def _drain(d: Dispatcher, publisher: _Publisher, kind: Kind) -> tuple[float, int, float]:
    """Wait until the publisher's messages are handled and the queue is empty:
    (msg/s of ``kind`` from the first received, deepest queue, publisher seconds)."""
    def handled() -> int:
        return d.accepted[kind.value] + d.duplicates + sum(d.validator.refused.values())

    # Retained births of an earlier run may still arrive: they count as births too.
    base, received = handled(), d.received
    deadline = time.monotonic() + _TIMEOUT_S
    while d.received == received and time.monotonic() < deadline:
        time.sleep(0.002)
    first, depth = time.perf_counter(), 0
    while (handled() - base < publisher.count or d.depth) and time.monotonic() < deadline:
        depth = max(depth, d.depth)
        time.sleep(0.005)
    rate = (handled() - base) / (time.perf_counter() - first)
    return rate, depth, publisher.seconds()


@contextmanager
def _victoria(data: Path) -> Iterator[str | None]:
    """A private VictoriaMetrics for the time-series sink; None when not installed."""
    if shutil.which("victoria-metrics") is None:
        yield None
        return
    server = VictoriaMetrics(data).start()
    try:
        yield server.url
    finally:
        server.stop()


def _fleet(port: int, db: Path, ids: list[str], rounds: int, alerts: bool,
           tsdb: str | None) -> tuple[float, int, float, dict[str, int]]:
    engine = make_engine(f"sqlite:///{db}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    states = DeviceStates(sessions)
    sinks: list[MessageSink] = [states]
    writer = None
    if tsdb is not None:
        writer = TelemetryWriter(sessions, TsdbConfig(enabled=True, url=tsdb))
        writer.start()
        sinks.append(writer)
    if alerts:
        sinks.append(AlertEngine(sessions, AlertConfig()))
    ingest = create_ingest(IngestConfig(url=f"mqtt://127.0.0.1:{port}", share_group=_GROUP),
                           sessions, sinks, gate=states)
    ingest.start()
    try:
        if not ingest.wait_ready(10):
            raise RuntimeError("fleet ingest did not connect")
        _drain(ingest.dispatcher, _Publisher(port, ids, Kind.STATUS), Kind.STATUS)
        rate, depth, pub_s = _drain(
            ingest.dispatcher, _Publisher(port, ids, Kind.TELEMETRY, rounds=rounds),
            Kind.TELEMETRY)
    finally:
        ingest.close()
        if writer is not None:
            writer.close()
        engine.dispose()
    d = ingest.dispatcher
    counts = {"accepted": sum(d.accepted.values()), "duplicates": d.duplicates,
              "refused": sum(d.validator.refused.values()), "queued over": d.queue_over,
              "sink errors": sum(d.sink_errors.values())}
    if writer is not None:
        counts |= {"points written": writer.written, "write errors": writer.write_errors}
    return rate, depth, len(ids) * rounds / pub_s, counts


def run() -> None:
    print(f"ingest: {DEVICES:,} devices' telemetry (~1.7 kB, QoS 1), publisher in its own "
          f"process (window {WINDOW}); births first, untimed")
    rows: list[tuple[str, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(workdir=Path(tmp) / "mq") as broker, \
            _victoria(Path(tmp) / "vm") as tsdb:
        db = Path(tmp) / "fleet.db"
        engine = make_engine(f"sqlite:///{db}")
        ids = build_inventory(engine, DEVICES)
        engine.dispose()
        bare, bare_pub = _bare(broker.port, ids)
        rows.append(("reference: bare paho MQTT 5 subscriber, json.loads", bare, bare_pub,
                     DEVICES * ROUNDS))
        variants: list[tuple[str, int, bool, str | None]] = [
            ("fleet ingest + DeviceStates", ROUNDS, False, None)]
        if tsdb is None:
            print("  victoria-metrics not installed: no time-series sink")
        else:
            variants.append(("fleet ingest + DeviceStates + TelemetryWriter", ROUNDS, False, tsdb))
        variants.append(("fleet: the above + AlertEngine", ALERT_ROUNDS, True, tsdb))
        for label, rounds, alerts, url in variants:
            rate, depth, pub, counts = _fleet(broker.port, db, ids, rounds, alerts, url)
            rows.append((label, rate, pub, DEVICES * rounds))
            print(f"  {label}: deepest dispatch queue {depth:,}; "
                  + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"  {'consumer':<50}{'messages':>9}{'msg/s':>8}{'ratio':>8}{'publisher msg/s':>17}")
    for label, rate, pub, count in rows:
        print(f"  {label:<50}{count:>9,}{rate:>8,.0f}{rate / bare:>7.3f}x{pub:>17,.0f}")
    fleet = rows[-1][1]
    verdict = "fits" if fleet >= NEEDED else "does NOT fit"
    print(f"  20,000 classrooms every 15 s need {NEEDED:,.0f} msg/s: headroom of the full "
          f"pipeline {fleet / NEEDED:.2f}x ({verdict} in one fleet process)")
