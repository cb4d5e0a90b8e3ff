"""A real agent whose clock is 8 hours fast (a BIOS clock kept in local time and read as
UTC, as a dual-booted classroom PC in China has it), through Mosquitto into the wired
fleet and a real VictoriaMetrics: the fleet times everything by its own receive time.

The agent runs in its own process (tests/e2e/skewed_agent.py) so that it can be hung
(SIGSTOP) and killed (SIGKILL: the broker publishes its Last Will, which carries the time
its connection began, 8 hours ahead).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.compat import UTC
from agent.contract import parse_ts
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertState
from fleet.tsdb import TsdbConfig
from tests.e2e.world import LUXI, World, device_password, sample_value, wait_until
from tests.fleet.api_world import PASSWORD
from tests.fleet.tsdb_server import VictoriaMetrics, victoria

__all__ = ["victoria"]

SKEW = timedelta(hours=8)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def agent_process(world: World, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The fleet (with a time-series store) and LUXI's agent, 8 h fast, in a process."""
    fleet = world.running
    config = {
        "device_id": LUXI,
        "mqtt": {"url": world.broker.url, "username": LUXI,
                 "password": device_password(LUXI), "backoff_max_s": 1.0},
        "hardware": {"backend": "simulated"},
        "agent": {"interval": 1, "state_dir": str(tmp_path / "agent-state")},
        "commands": {"fleet_public_key": fleet.signer.public_key_b64},
        "network": {"targets": {"fleet": "127.0.0.1"}},
    }
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.skewed_agent", str(path), "--skew-h", "8",
         "--unplug-at", "3"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)


@pytest.fixture(autouse=True)
def fleet_with_tsdb(world: World, victoria: VictoriaMetrics) -> None:
    # VictoriaMetrics keeps a day and exports up to its now: the fleet's stopped clock
    # starts a few minutes before the real now, which the test moves it towards.
    world.clock.set(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3))
    alerts = world.config.alerts
    world.config = replace(
        world.config,
        tsdb=TsdbConfig(enabled=True, url=victoria.url, flush_interval_s=0.2, timeout_s=2),
        # The fleet's clock is moved by hand here (a move of minutes would make the agent
        # look silent): the silence and the clock alerts fire without their up-delays.
        alerts=replace(alerts, up_delays={**alerts.up_delays, "device_silent": 0.0,
                                          "clock_skew": 0.0}),
    )
    world.start_fleet()


def _alert(world: World, rule: str, state: AlertState = AlertState.FIRING) -> Alert:
    return wait_until(f"a {state.value} {rule} alert", lambda: next(
        (a for a in world.alerts(rule=rule, device_id=LUXI) if a.state is state), None),
        between=world.tick)


def _health(world: World) -> dict[str, Any]:
    with TestClient(world.running.api) as client:
        token = client.post("/api/v1/auth/login",
                            json={"username": "dt-luxi-tech", "password": PASSWORD}).json()
        reply = client.get(f"/api/v1/devices/{LUXI}",
                           headers={"Authorization": f"Bearer {token['access_token']}"})
        return dict(reply.json()["health"])


def test_an_agent_8_hours_fast_reports_on_fleet_time_and_its_clock_is_an_alert(
    world: World, agent_process: subprocess.Popen[bytes], victoria: VictoriaMetrics,
) -> None:
    fleet = world.running
    # Its telemetry flows: stamped in the state with the fleet's time, its own ts kept.
    state = wait_until("LUXI online and reporting", lambda: (
        s if (s := fleet.states.get(LUXI)) and s.online and s.telemetry else None))
    assert state.telemetry_at == world.clock()
    assert parse_ts(state.telemetry["ts"]) - world.clock() > SKEW
    assert sample_value(fleet.mqtt.samples(), "syncclass_ingest_suspicious_total",
                        reason="ts-ahead") == 0
    later = world.clock.advance(seconds=1)
    wait_until("telemetry received after the fleet's clock moved", lambda: (
        (s := fleet.states.get(LUXI)) is not None and s.telemetry_at == later))

    # Its clock is an alert, with the measured offset and what to do.
    skew = _alert(world, "clock_skew")
    assert skew.details["value"] is not None
    assert abs(skew.details["value"] - SKEW.total_seconds()) < 600
    assert "快8小时" in skew.details["message_zh"] and "timedatectl" in skew.details["message_zh"]
    assert re.search(r"8 h \d+ min ahead of", skew.details["message_en"])
    assert "NTP" in skew.details["message_en"]
    assert skew.last_seen_at <= world.clock()
    assert sample_value(fleet.states.samples(), "syncclass_devices_clock_skewed") == 1

    # Its tickets update at once: the camera it unplugs is a ticket on fleet time.
    camera = _alert(world, "camera_missing")
    assert camera.started_at <= world.clock() and camera.last_seen_at <= world.clock()

    # Health is its open alerts: the firing critical camera first, the clock after.
    health = _health(world)
    assert health["status"] == "critical"
    assert [p["reason"] for p in health["problems"]] == ["camera_missing", "clock_skew"]

    # Hung behind a live connection: silent on fleet time, and cleared on fleet time.
    agent_process.send_signal(signal.SIGSTOP)
    time.sleep(0.5)  # what it sent before it stopped reaches the fleet
    hung_at = world.clock.advance(seconds=61)  # past the fleet's own start-up grace
    silent = _alert(world, "device_silent")
    assert silent.started_at == hung_at and silent.last_seen_at == hung_at
    agent_process.send_signal(signal.SIGCONT)
    clearing = wait_until("device_silent cleared by the agent's next telemetry", lambda: (
        a if (a := next(iter(world.alerts(rule="device_silent", device_id=LUXI)), None))
        and a.clear_since is not None else None), between=world.tick)
    assert clearing.clear_since == hung_at  # the fleet's time, not the agent's 8 h ahead

    # Killed: the broker publishes its Last Will, stamped with the fleet's receive time.
    wait_until("fresh telemetry", lambda: (
        (s := fleet.states.get(LUXI)) is not None and s.online and s.telemetry_at == hung_at))
    died_at = world.clock.advance(seconds=1)
    agent_process.kill()
    gone = wait_until("LUXI offline", lambda: (
        s if (s := fleet.states.get(LUXI)) and not s.online else None))
    assert gone.status_at == died_at and gone.last_seen == died_at
    fleet.states.flush()
    health = _health(world)
    assert health["online"] is False
    assert parse_ts(health["status_at"].replace("+00:00", "Z")) == died_at
    def pending_offline() -> Alert | None:
        with session_scope(fleet.sessions) as session:
            return next(iter(fleet.alerts.query(session, rule="device_offline", device_id=LUXI,
                                                include_pending=True)), None)

    offline = wait_until("a device_offline alert", pending_offline)
    assert offline.last_seen_at == died_at  # pending: its up-delay waits out a restart
    assert parse_ts(offline.details["device_ts"]) - died_at > SKEW

    # The dashboard's last status point is offline, at the moment the fleet learned it.
    def status_series() -> list[dict[str, Any]]:
        series = victoria.export(f'{{__name__="syncclass_status_online",device="{LUXI}"}}')
        return series if series and series[0]["values"][-1:] == [0] else []

    [online] = wait_until("the offline point in VictoriaMetrics", status_series)
    assert online["timestamps"][-1] == int(died_at.timestamp() * 1000)
    assert online["timestamps"] == sorted(online["timestamps"])
    assert online["values"][-2:] == [1, 0]
