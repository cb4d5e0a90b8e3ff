"""The fleet's PostgreSQL goes away under a running fleet and comes back: the fleet keeps
listening, says it is degraded, and recovers without a restart.

While the database is down:

* nothing stops: the MQTT connection stays up, every message is still received and
  validated, the ticker, the notification loop, the device-state flusher and the ingest
  dispatcher keep running; each sink that needed the database counts its failure
  (``syncclass_ingest_sink_errors_total{sink=...}``) and the next message is handled;
* ``/healthz`` answers 503 ``{"status": "degraded", "db": false, "mqtt": true}`` and
  ``/metrics`` still serves the ingest's counters, flagging the components it could not
  read (``syncclass_metric_source_failed``);
* device state is not lost: online/offline, sequence tracking and the latest telemetry
  live in memory and the first flush after the database returns writes what arrived
  during the outage;
* a fault that persists is not lost: the agent repeats it in every telemetry, so after
  the database returns the alert fires and its e-mail goes out;
* what is lost is what arrives once and is only written: the hot-plug event of the
  unplugged camera (agents do not repeat events), so the ticket starts when the first
  telemetry after the outage is written, not when the camera was pulled; likewise (same
  path, not exercised here) a check answer or command result arriving during the outage
  is not recorded, and the check's deadline turns it into "no answer" and a recheck.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from agent.hardware.scenario import Fault
from fleet.broker import Mosquitto
from fleet.config import DatabaseConfig
from fleet.db.base import make_engine, session_scope
from fleet.db.migrate import upgrade
from fleet.db.models import AlertState, DeviceState
from tests.e2e.world import (
    LUXI,
    LUXI_TECH,
    SHIYAN,
    STUDENT_CAMERA,
    World,
    sample_value,
    wait_until,
)
from tests.fleet.pg import PgCluster
from tests.fleet.pilot import load_pilot
from tests.fleet.smtp import SmtpServer

# The fleet's long-running threads (fleet.app, fleet.state, fleet.ingest.dispatch).
# Device states are written by the ingest's acknowledgement rounds (ingest-ack).
FLEET_THREADS = {"fleet-ticker", "fleet-notify", "ingest-ack", "ingest-dispatch"}


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL of this test's own, holding the pilot inventory: stopping it must
    not pull the database from under other tests."""
    pg = PgCluster()
    try:
        pg.start()
        upgrade(pg.url)
        engine = make_engine(pg.url)
        load_pilot(sessionmaker(engine))
        engine.dispose()
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg_world(tmp_path: Path, cluster: PgCluster, e2e_broker: Mosquitto,
             smtp_server: SmtpServer) -> Iterator[World]:
    world = World(tmp_path, e2e_broker, smtp_server)
    world.config = replace(world.config, database=DatabaseConfig(url=cluster.url))
    try:
        yield world
    finally:
        if not cluster.running:  # a test that failed during the outage
            cluster.resume()
        world.close()


def _running_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()} & FLEET_THREADS


def _stored_telemetry_at(world: World, device_id: str) -> datetime | None:
    with session_scope(world.running.sessions) as session:
        row = session.get(DeviceState, device_id)
        return None if row is None else row.telemetry_at


def _health(api: TestClient) -> tuple[int, dict[str, object]]:
    """/healthz less whether this process holds the coordinator lease (it takes it on
    its own tick, whenever that comes; tests/fleet/test_lease.py tests it)."""
    reply = api.get("/healthz")
    body = reply.json()
    assert isinstance(body.pop("coordinator"), bool)
    return reply.status_code, body


def test_fleet_survives_and_recovers_from_losing_its_database(
    pg_world: World, cluster: PgCluster
) -> None:
    world = pg_world
    world.page_always()  # no lesson today: the camera would be held until the next one
    fleet = world.start_fleet()
    world.start_agent(SHIYAN)
    luxi = world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    api = TestClient(fleet.api)
    assert _health(api) == (200, {"status": "ok", "db": True, "mqtt": True})
    assert _running_threads() == FLEET_THREADS
    dispatch = fleet.mqtt.dispatcher

    cluster.halt()
    assert api.get("/healthz").status_code == 503
    # The camera is pulled while nothing can be written.
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    unplugged = world.wait_fresh_telemetry(LUXI)
    assert unplugged.telemetry["sections"]["cameras"]["ok"] is False
    wait_until("the alert engine's failures to be counted",
               lambda: dispatch.sink_errors["AlertEngine"] >= 2)  # the event and telemetry
    accepted = sum(dispatch.accepted.values())
    wait_until("the ingest to go on accepting messages",
               lambda: sum(dispatch.accepted.values()) > accepted + 2)
    fleet.tick()  # every step fails on its own; none of it escapes
    assert _health(api) == (503, {"status": "degraded", "db": False, "mqtt": True})
    metrics = api.get("/metrics")
    assert metrics.status_code == 200
    assert 'syncclass_ingest_sink_errors_total{sink="AlertEngine"}' in metrics.text
    assert 'syncclass_metric_source_failed{source="AlertEngine"} 1.0' in metrics.text
    assert fleet.mqtt.connected
    assert _running_threads() == FLEET_THREADS

    back = world.clock.advance(minutes=2)  # the outage lasted two minutes
    cluster.resume()
    # No restart, no tick from the test: the fleet's own threads must pick up again.
    alert = wait_until("the camera alert to fire",
                       lambda: next(iter(world.alerts(rule="camera_missing")), None))
    assert (alert.device_id, alert.state) == (LUXI, AlertState.FIRING)
    # Lost: the moment of the unplug (its event was never recorded).
    assert alert.started_at == back
    mail = wait_until("the firing e-mail to the technician",
                      lambda: world.mail_to(LUXI_TECH, "firing", alert.id))[0]
    assert "摄像头未连接" in str(mail.message["Subject"])
    # Not lost: the state the fleet kept in memory reaches the table at the next flush.
    wait_until("the device-state flusher to write again",
               lambda: _stored_telemetry_at(world, LUXI) == back, timeout=15)
    assert _health(api) == (200, {"status": "ok", "db": True, "mqtt": True})
    assert sample_value(fleet.mqtt.samples(), "syncclass_ingest_queue_over_total") == 0
    assert _running_threads() == FLEET_THREADS
