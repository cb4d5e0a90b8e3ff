"""Bad input against the typed contract v2, through a real Mosquitto and the real ingest
with the real alert engine as a sink: what is refused whole, what is dropped in part
(and the rest kept), how each is counted in /metrics, that the ingest goes on, and that
nothing of it opens a ticket."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent.contract import DEFAULT_PREFIX, Kind, envelope
from fleet.alerts import AlertConfig, AlertEngine
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert
from tests.clock import ManualClock
from tests.e2e.world import sample_value
from tests.fleet.ingest_helpers import (
    SECTIONS,
    DeviceClient,
    Recorder,
    inventory_db,
    make_ingest,
    telemetry,
    wait_until,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
TOPIC = f"{DEFAULT_PREFIX}/dev/dev-a/telemetry"
pytestmark = pytest.mark.usefixtures("ingests_closed")


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    return inventory_db(tmp_path)


def healthy() -> dict[str, Any]:
    sections = copy.deepcopy(SECTIONS)
    sections["microphones"] = {"ok": True, "devices": [{"id": "mic0", "ok": True}],
                               "findings": []}
    return sections


def finding(reason: str, entity: str, level: str = "fail") -> dict[str, Any]:
    return {"level": level, "reason": reason, "message_zh": "坏", "message_en": "bad",
            "entity": entity}


def test_bad_input_is_refused_or_dropped_counted_and_opens_no_ticket(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    clock = ManualClock(T0)
    recorder = Recorder()
    engine = AlertEngine(sessions, AlertConfig(up_delay_s=0), clock=clock)
    # The engine first: what the recorder holds, the engine has handled.
    ingest = make_ingest(broker, sessions, [engine, recorder], clock=clock)
    dev = DeviceClient(broker, "dev-a")

    # Refused whole: the envelope or a field of the kind breaks the contract.
    good = telemetry("dev-a", 1, when=T0, sections=healthy())
    refused = {
        "out-of-range": good | {"interval": -15},
        "bad-seq": good | {"seq": "7"},
        "bad-field": good | {"sections": ["system"]},
        "bad-ts": good | {"ts": "2026-03-02T01:00:00"},  # no offset
    }
    for data in refused.values():
        dev.send_raw(TOPIC, json.dumps(data).encode())
    # Valid, but from a clock no device has: held back as suspicious, never a sink's.
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 2, when=datetime(3000, 1, 1, tzinfo=UTC),
                                       sections=healthy()))

    # Accepted, with the bad parts dropped and the rest kept.
    parts = healthy()
    parts["system"]["cpu_pct"] = 250.0  # out of range: the system section goes
    parts["cameras"]["findings"] = [finding("frozen", "camera:cam0"),  # not catalogued
                                    finding("camera_black", "camera:cam0")]
    parts["displays"] = ["HDMI-1"]  # a section of the wrong type
    parts["network"]["findings"] = [{"level": "fail", "reason": 7}]  # not a finding
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 3, when=T0, sections=parts))
    # A v1 agent's unknown reason on an item: dropped at the upgrade, like v2's.
    v1 = telemetry("dev-a", 4, when=T0, sections={
        "speakers": {"ok": False, "devices": [{"id": "s0", "ok": False,
                                               "reason": "disconnected"}]}}) | {"schema": 1}
    dev.send(Kind.TELEMETRY, v1)
    # A check whose only failure is not catalogued: dropped, and its verdict clamped.
    check = envelope("dev-a", 5, T0) | {
        "verdict": "fail", "request_id": None, "lesson_id": None,
        "probes": {"system": {"ok": True, "disk_pct": -3}},  # out of range: dropped
        "findings": [finding("up_low", "bandwidth:up"),
                     finding("clock_unsynced", "system", "warn")]}
    dev.send(Kind.CHECK, check)
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 6, when=T0, sections=healthy()))

    assert wait_until(lambda: len(recorder.messages) == 4)
    validator = ingest.dispatcher.validator
    assert validator.refused == {reason: 1 for reason in refused}
    assert validator.suspicious == {"ts-ahead": 1}
    assert validator.dropped == {"out-of-range": 2, "unknown-reason": 3, "bad-type": 1,
                                 "bad-finding": 1}
    samples = list(ingest.samples())
    assert sample_value(samples, "syncclass_ingest_dropped_total", reason="unknown-reason") == 3
    assert sample_value(samples, "syncclass_ingest_refused_total", reason="out-of-range") == 1

    kept, upgraded, checked, last = (p for _, _, p in recorder.messages)
    assert set(kept["sections"]) == {"cameras", "microphones", "network", "bandwidth"}
    assert [f["reason"] for f in kept["sections"]["cameras"]["findings"]] == ["camera_black"]
    assert kept["sections"]["network"]["findings"] == []
    assert upgraded["schema"] == 1  # as sent: only the shape is v2's
    assert upgraded["sections"]["speakers"]["findings"] == []
    assert checked["verdict"] == "warn" and checked["probes"] == {}
    assert [f["reason"] for f in checked["findings"]] == ["clock_unsynced"]
    assert last["seq"] == 6  # the ingest went on

    # The catalogued failure and the check's clock_unsynced warning (a warning the
    # catalogue makes alert) opened their tickets; nothing dropped or refused did.
    clock.advance(seconds=1)
    engine.tick()
    with session_scope(sessions) as s:
        assert sorted((a.rule, a.entity) for a in s.scalars(select(Alert))) == [
            ("camera_black", "camera:cam0"), ("clock_unsynced", "")]
    dev.close()


def test_a_v2_agents_warning_alerts_where_the_catalogue_says(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    """clock_unsynced is only ever a warning, and reaches its rule; cpu_high does not."""
    clock = ManualClock(T0)
    engine = AlertEngine(sessions, AlertConfig(up_delay_s=0), clock=clock)
    recorder = Recorder()
    # The engine first: what the recorder holds, the engine has handled.
    make_ingest(broker, sessions, [engine, recorder], clock=clock)
    dev = DeviceClient(broker, "dev-a")
    sections = healthy()
    sections["system"]["clock_synced"] = False
    sections["system"]["findings"] = [finding("clock_unsynced", "system", "warn"),
                                      finding("cpu_high", "system", "warn")]
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1, when=T0, sections=sections))
    assert wait_until(lambda: len(recorder.messages) == 1)
    clock.advance(seconds=1)
    engine.tick()
    with session_scope(sessions) as s:
        assert [(a.rule, a.entity) for a in s.scalars(select(Alert))] == [("clock_unsynced", "")]
    dev.close()
