"""The device page's history: the fleet's own bounded ring, and the same figures read
back through InfluxQL from a real InfluxDB 1.x holding the lines the TelemetryWriter
formats; the API falls back to the ring, and says so, when the store does not answer."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.contract import envelope
from fleet.broker import free_port
from fleet.history import SERIES_MAX, HistoryConfig, Series, TelemetryHistory
from fleet.influxql import read_influxql
from fleet.tsdb import telemetry_lines
from tests.fleet.api_world import NOW, World, world
from tests.fleet.ingest_helpers import SECTIONS
from tests.influx1 import Influx1, influx1

__all__ = ["influx1", "world"]

DEVICE = "dongtou-luxi-sync1"


def sections(rtt: float, temp: float, **targets: dict[str, Any]) -> dict[str, Any]:
    """The agent's telemetry sections (as ingest_helpers' sample) with these figures."""
    network = {"ok": True, "targets": {"peer": {"ok": True, "rtt_ms": rtt, "jitter_ms": 1.0,
                                                "loss_pct": 0.0}, **targets}}
    return SECTIONS | {"network": network, "system": SECTIONS["system"] | {"temp_c": temp}}


def feed(history: TelemetryHistory, at: datetime, body: dict[str, Any]) -> None:
    history.on_telemetry(DEVICE, envelope(DEVICE, 1, at) | {"interval": 15, "sections": body})


def by_key(series: list[Series]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    return {(s.field, s.target): s.points for s in series}


def test_the_ring_averages_buckets_and_forgets_what_is_older_than_its_span() -> None:
    now = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    clock = [now]
    history = TelemetryHistory(lambda: clock[0])
    for minutes, rtt in ((3, 10.0), (2, 30.0)):  # one 5-minute bucket: their mean
        feed(history, now - timedelta(minutes=minutes), sections(rtt, 50.0))
    feed(history, now - timedelta(days=2), sections(99.0, 50.0))  # in the week, not the day
    feed(history, now + timedelta(hours=1), sections(40.0, 50.0))  # device clock ahead: now
    day = by_key(history.read(DEVICE, "day", now))
    assert [v for _, v in day[("rtt_ms", "peer")]] == [20.0, 40.0]
    week = by_key(history.read(DEVICE, "week", now))
    assert [v for _, v in week[("rtt_ms", "peer")]] == [99.0, round(80 / 3, 3)]
    # A week later only the newest hour is left, and a replay older than the span is dropped.
    later = clock[0] = now + timedelta(days=7, minutes=30)
    feed(history, later, sections(5.0, 50.0))
    feed(history, later - timedelta(days=8), sections(500.0, 50.0))
    assert [v for _, v in by_key(history.read(DEVICE, "week", later))[("rtt_ms", "peer")]] == [
        5.0]
    # An agent naming ever new targets cannot grow the fleet's memory.
    many = {f"t{i}": {"rtt_ms": 1.0} for i in range(200)}
    feed(history, later, sections(5.0, 50.0, **many))
    assert len(history.read(DEVICE, "day", later)) == SERIES_MAX


def test_influxql_store_returns_what_the_ring_holds(influx1: Influx1) -> None:
    now = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    history = TelemetryHistory(lambda: now)
    lines = []
    tags = {"county": "洞头区", "school": "洞头区鹿西乡小学", "device": DEVICE}
    for i in range(8):
        at = now - timedelta(minutes=17 * i)
        body = sections(10.0 + i, 55.0 + i % 3, broker={"rtt_ms": 2.0 + i})
        feed(history, at, body)
        lines += telemetry_lines(body, tags, at)
    influx1.write("\n".join(lines))
    config = HistoryConfig(influxql_url=influx1.url, database="syncclass")
    for span in ("day", "week"):
        ours = by_key(history.read(DEVICE, span, now))
        store = by_key(read_influxql(config, DEVICE, span, now))
        assert ("rtt_ms", "broker") in store and ("temp_c", "") in store
        assert store.keys() == ours.keys()
        for key, points in ours.items():
            assert [t for t, _ in store[key]] == [t for t, _ in points], key
            assert [v for _, v in store[key]] == [round(v, 3) for _, v in points], key


def test_api_reads_the_store_and_falls_back_to_the_ring_saying_why(
    world: World, influx1: Influx1
) -> None:
    history = TelemetryHistory(world.clock)
    world.services.history = history
    feed(history, NOW - timedelta(minutes=10), sections(12.0, 60.0))
    influx1.write("\n".join(telemetry_lines(sections(34.0, 61.0), {"device": DEVICE},
                                            NOW - timedelta(minutes=10))))
    path = f"/api/v1/devices/{DEVICE}/history"

    def configured(url: str) -> dict[str, Any]:
        api = world.services.config
        world.services.config = dataclasses.replace(api, grafana_url="http://grafana.local:3000",
                                                    history=HistoryConfig(influxql_url=url))
        reply = world.get("dt-luxi-tech", path)
        world.services.config = api
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def rtt(body: dict[str, Any]) -> list[float]:
        return [p[1] for s in body["series"] if s["field"] == "rtt_ms" for p in s["points"]]

    plain = world.get("dt-luxi-tech", path).json()
    assert (plain["source"], plain["grafana_url"], rtt(plain)) == ("fleet", "", [12.0])
    stored = configured(influx1.url)
    assert (stored["source"], stored["note"], rtt(stored)) == ("tsdb", "", [34.0])
    assert stored["grafana_url"].startswith(
        "http://grafana.local:3000/d/syncclass-overview?var-county=")
    away = configured(f"http://127.0.0.1:{free_port()}")
    assert (away["source"], rtt(away)) == ("fleet", [12.0])
    assert away["note"].startswith("时序数据库无应答")
    # Another school's device is not this technician's, its history neither.
    assert world.get("dt-luxi-tech", "/api/v1/devices/dongtou-shiyan-sync1/history").status_code \
        == 404
    bad = world.get("dt-luxi-tech", path, params={"span": "year"})
    assert bad.status_code == 422
