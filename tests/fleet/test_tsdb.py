"""Telemetry into a real VictoriaMetrics through influxdb-client, and its outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.contract import Kind, envelope, format_ts
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory
from fleet.ingest import IngestConfig, create_ingest
from fleet.tsdb import TelemetryWriter, TsdbConfig
from tests.fleet.influx2_front import InfluxFront
from tests.fleet.ingest_helpers import DeviceClient, inventory_db, status, telemetry
from tests.fleet.tsdb_server import VictoriaMetrics

PLACE = {"county": "洞头区", "school": "鹿西小学", "pair": "洞头结对", "classroom": "三(2)班",
         "device": "dev-b"}


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    return inventory_db(tmp_path)


def writer(sessions: SessionFactory, url: str, **cfg: Any) -> TelemetryWriter:
    return TelemetryWriter(sessions, TsdbConfig(enabled=True, url=url, timeout_s=2, **cfg))


def test_telemetry_events_and_checks_land_with_inventory_tags(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    tsdb = writer(sessions, victoria.url)
    now = datetime.now(UTC).replace(microsecond=0)
    tsdb.on_telemetry("dev-b", telemetry("dev-b", 1, when=now))
    tsdb.on_event("dev-b", envelope("dev-b", 2, now) | {"type": "device_removed",
                                                       "entity": "camera:cam0"})
    tsdb.on_check("dev-b", envelope("dev-b", 3, now) | {"verdict": "fail", "probes": {},
                                                       "findings": [{"code": "x"}]})
    tsdb.on_status("dev-b", status("dev-b", "online", 2, 4))
    assert tsdb.flush() == tsdb.written > 0
    assert tsdb.buffered == 0

    cpu = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert len(cpu) == 1
    assert cpu[0]["metric"] == {"__name__": "syncclass_system_cpu_pct", **PLACE}
    assert cpu[0]["values"] == [12.5]
    assert cpu[0]["timestamps"] == [int(now.timestamp() * 1000)]

    (rtt,) = victoria.export('{__name__="syncclass_network_rtt_ms"}')
    assert rtt["metric"]["entity"] == "target:broker"
    (level,) = victoria.export('{__name__="syncclass_microphone_level_dbfs"}')
    assert level["metric"]["entity"] == "microphone:mic0"
    assert level["values"] == [-90.0]
    (mic_ok,) = victoria.export('{__name__="syncclass_microphone_ok",entity="microphone:mic0"}')
    assert mic_ok["values"] == [0]  # booleans become 0/1
    (synced,) = victoria.export('{__name__="syncclass_system_clock_synced"}')
    assert synced["values"] == [1]
    assert victoria.export('{__name__="syncclass_system_temp_c"}', timeout=0) == []  # null
    (up,) = victoria.export('{__name__="syncclass_bandwidth_up_mbps"}')
    assert up["values"] == [8.0]
    (event,) = victoria.export('{__name__="syncclass_event_count"}')
    assert event["metric"]["type"] == "device_removed"
    assert event["metric"]["entity"] == "camera:cam0"
    (check,) = victoria.export('{__name__="syncclass_check_verdict_code"}')
    assert (check["metric"]["verdict"], check["values"]) == ("fail", [2])
    (online,) = victoria.export('{__name__="syncclass_status_online"}')
    assert online["values"] == [1]


def test_names_with_spaces_commas_equals_and_backslashes_arrive_unchanged(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    place = {"county": "温州市 洞头区", "school": "鹿西小学,分校", "pair": "洞头结对=一组,二组",
             "classroom": "三(2)班\\后排\\", "device": "dev-b"}
    tsdb = TelemetryWriter(sessions, TsdbConfig(enabled=True, url=victoria.url, timeout_s=2),
                           tags=lambda _device: place)
    now = datetime.now(UTC).replace(microsecond=0)
    sections = {
        "cameras": {"devices": [{"id": "USB 摄像头,2=左", "fps": 25}]},
        "network": {"targets": {"对端 学校,1=b": {"rtt_ms": 7.5}}},
        "room sensor,1": {"co2 ppm=x,y": 800, "note": "not a number: left out"},
        "system": {"cpu_pct": 3.0},
    }
    tsdb.on_telemetry("dev-b", telemetry("dev-b", 1, when=now, sections=sections))
    tsdb.on_event("dev-b", envelope("dev-b", 2, now) | {"type": "device_added",
                                                       "entity": "camera:a b\nc"})
    assert tsdb.flush() == 5

    (fps,) = victoria.export('{__name__="syncclass_camera_fps"}')
    assert fps["metric"] == {"__name__": "syncclass_camera_fps", **place,
                             "entity": "camera:USB 摄像头,2=左"}
    assert fps["values"] == [25]
    (rtt,) = victoria.export('{__name__="syncclass_network_rtt_ms"}')
    assert (rtt["metric"]["entity"], rtt["values"]) == ("target:对端 学校,1=b", [7.5])
    (co2,) = victoria.export('{__name__="syncclass_room sensor,1_co2 ppm=x,y"}')
    assert (co2["metric"]["school"], co2["values"]) == ("鹿西小学,分校", [800])
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert cpu["metric"]["classroom"] == "三(2)班\\后排\\"
    # A line break cannot be sent inside a line: it arrives as backslash + n.
    (event,) = victoria.export('{__name__="syncclass_event_count"}')
    assert event["metric"]["entity"] == "camera:a b\\nc"


def test_database_down_keeps_points_and_delivers_them_after_restart(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    tsdb = writer(sessions, victoria.url, max_buffer=1000)
    victoria.stop()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for n in range(5):
        tsdb.on_telemetry("dev-a", telemetry("dev-a", n, when=start + timedelta(seconds=15 * n)))
    assert tsdb.flush() == 0  # nothing raised into the ingest: counted instead
    assert tsdb.write_errors == 1
    held = tsdb.buffered
    assert held > 0
    assert tsdb.dropped == 0

    victoria.start()
    assert tsdb.flush() == held
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert len(cpu["values"]) == 5


def test_a_full_buffer_drops_the_oldest_points_and_counts_them(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    tsdb = writer(sessions, victoria.url, max_buffer=3, batch_size=2)
    victoria.stop()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for n in range(5):
        tsdb.on_telemetry("dev-a", telemetry("dev-a", n, when=start + timedelta(seconds=n),
                                             sections={"system": {"cpu_pct": float(n)}}))
    assert (tsdb.buffered, tsdb.dropped) == (3, 2)
    tsdb.flush()
    assert (tsdb.buffered, tsdb.dropped, tsdb.write_errors) == (3, 2, 1)
    samples = {s.name: s.value for s in tsdb.samples()}
    assert samples["syncclass_tsdb_points_dropped_total"] == 2
    assert samples["syncclass_tsdb_points_buffered"] == 3

    victoria.start()
    assert tsdb.flush() == 3
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert cpu["values"] == [2.0, 3.0, 4.0]  # the newest survived


def test_the_background_thread_writes_and_close_flushes(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    tsdb = TelemetryWriter(sessions, TsdbConfig(enabled=True, url=victoria.url,
                                                flush_interval_s=3600))
    tsdb.start()
    tsdb.on_telemetry("dev-a", telemetry("dev-a", 1, sections={"system": {"cpu_pct": 1.0}}))
    tsdb.close()  # the final flush does not wait for the next interval
    assert tsdb.written == 1
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert cpu["metric"]["school"] == "城关小学"


def test_from_a_device_through_the_broker_into_victoria_metrics(
    sessions: SessionFactory, victoria: VictoriaMetrics, broker: Mosquitto
) -> None:
    tsdb = TelemetryWriter(sessions, TsdbConfig(enabled=True, url=victoria.url,
                                                flush_interval_s=0.1))
    tsdb.start()
    ingest = create_ingest(IngestConfig(url=broker.url), sessions, [tsdb])
    ingest.start()
    try:
        assert ingest.wait_ready(10)
        dev = DeviceClient(broker, "dev-b")
        dev.send(Kind.TELEMETRY, telemetry("dev-b", 1))
        dev.send(Kind.TELEMETRY, telemetry("dev-a", 2))  # spoofed: never reaches the TSDB
        (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
        assert cpu["metric"] == {"__name__": "syncclass_system_cpu_pct", **PLACE}
        assert ingest.dispatcher.validator.refused == {"device-mismatch": 1}
        dev.close()
    finally:
        ingest.close()
        tsdb.close()


def test_a_refused_batch_is_counted_and_never_holds_back_later_points(
    sessions: SessionFactory, influx_front: InfluxFront, victoria: VictoriaMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An agent bug sends cpu_pct as a boolean once: InfluxDB refuses that point (a field
    keeps its first type).  Its batch is not retried, the next batches arrive."""
    tsdb = writer(sessions, influx_front.url, batch_size=1)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    cpu = [12.5, True, 30.0, 40.0]
    for n, value in enumerate(cpu):
        tsdb.on_telemetry("dev-a", telemetry("dev-a", n, when=start + timedelta(seconds=15 * n),
                                             sections={"system": {"cpu_pct": value}}))
    assert tsdb.flush() == 3
    assert (tsdb.rejected, tsdb.buffered, tsdb.write_errors) == (1, 0, 0)
    assert influx_front.answers == [204, 422, 204, 204]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "field type conflict" in refusals[0]
    assert "syncclass_system" in refusals[0] and "cpu_pct=true" in refusals[0]
    (stored,) = victoria.export('{__name__="syncclass_system_cpu_pct"}', min_series=1)
    assert stored["values"] == [12.5, 30.0, 40.0]
    sample = {s.name: s.value for s in tsdb.samples()}
    assert sample["syncclass_tsdb_points_rejected_total"] == 1


def test_a_server_error_keeps_the_batch_for_a_jittered_retry(
    sessions: SessionFactory, influx_front: InfluxFront, victoria: VictoriaMetrics,
) -> None:
    tsdb = writer(sessions, influx_front.url, flush_interval_s=4.0, retry_max_s=60.0)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for n in range(3):
        tsdb.on_telemetry("dev-a", telemetry("dev-a", n, when=start + timedelta(seconds=15 * n)))
    held = tsdb.buffered
    influx_front.fail_next += [503, 500]
    assert tsdb.flush() == 0
    assert tsdb.flush() == 0
    assert (tsdb.write_errors, tsdb.rejected, tsdb.buffered) == (2, 0, held)
    # Two failures: 4 s * 2**2 = 16 s, jittered into [8, 16] so processes spread out.
    waits = {tsdb._next_wait() for _ in range(20)}
    assert all(8.0 <= w <= 16.0 for w in waits) and len(waits) > 1
    assert tsdb.flush() == held
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert len(cpu["values"]) == 3


def test_points_are_on_fleet_time_for_a_skewed_clock_and_a_last_will(
    sessions: SessionFactory, victoria: VictoriaMetrics
) -> None:
    """An agent 8 h fast: live telemetry lands at its arrival, a replayed record where it
    happened (its ts less the measured offset), and a Last Will, which carries the time
    its connection began, at the moment the fleet received it."""
    now = datetime.now(UTC).replace(microsecond=0)
    fast = timedelta(hours=8)
    tsdb = TelemetryWriter(sessions, TsdbConfig(enabled=True, url=victoria.url, timeout_s=2),
                           clock=lambda: now, offset=lambda _: fast.total_seconds())
    replayed = now - timedelta(minutes=10)
    tsdb.on_telemetry("dev-b", telemetry("dev-b", 1, when=replayed + fast,
                                         sections={"system": {"cpu_pct": 1.0}}))
    tsdb.on_telemetry("dev-b", telemetry("dev-b", 2, when=now + fast + timedelta(seconds=2),
                                         sections={"system": {"cpu_pct": 2.0}}))
    connected = now - timedelta(hours=1) + fast
    tsdb.on_status("dev-b", status("dev-b", "offline", 3, 2) | {"ts": format_ts(connected)})
    assert tsdb.flush() == 3
    (cpu,) = victoria.export('{__name__="syncclass_system_cpu_pct"}')
    assert cpu["values"] == [1.0, 2.0]
    assert cpu["timestamps"] == [int(replayed.timestamp() * 1000), int(now.timestamp() * 1000)]
    (online,) = victoria.export('{__name__="syncclass_status_online"}')
    assert (online["values"], online["timestamps"]) == ([0], [int(now.timestamp() * 1000)])
