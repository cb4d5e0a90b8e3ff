"""Every panel and variable query of the Grafana dashboards runs on a real InfluxDB 1.6
over lines that the fleet's writer builds from a simulated classroom's telemetry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.hardware import open_backend
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.runner import ProbeRunner
from agent.thresholds import Thresholds
from fleet.tsdb import line, telemetry_lines
from tests.influx1 import Influx1, influx1  # noqa: F401

DASHBOARDS = sorted((Path(__file__).parent.parent / "dashboards").glob("*.json"))


def _expand(query: str) -> str:
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1m")
        .replace("$county", ".*")
        .replace("$school", ".*")
    )


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    return queries + [v["query"] for v in dashboard["templating"]["list"]]


def _load_classroom(server: Influx1) -> None:
    ctx = ProbeContext(open_backend("simulated"), Thresholds(), {"peer": "peer"},
                       bandwidth_url="http://fleet.invalid/api/v1/bandwidth")
    runner = ProbeRunner(ctx)
    runner.check(CheckParams())  # the active bandwidth test runs in a pre-class check
    tags = {"county": "洞头区", "school": "洞头区实验小学", "pair": "洞头一组",
            "classroom": "同步课堂教室", "device": "dt-town-01"}
    now = datetime.now(UTC)
    lines = []
    for minutes in (2, 1):
        sections = runner.collect().sections
        lines += telemetry_lines(sections, tags, now - timedelta(minutes=minutes))
    lines.append(line("syncclass_status", tags, {"online": True, "session": 1}, now))
    lines.append(line("syncclass_check", {**tags, "verdict": "pass"},
                      {"verdict_code": 0, "findings": 0}, now))
    server.write("\n".join(lines))


def test_dashboards_exist() -> None:
    assert DASHBOARDS, "no dashboard JSON in dashboards/"


def test_every_dashboard_query_returns_data(influx1: Influx1) -> None:  # noqa: F811
    _load_classroom(influx1)
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for query in _queries(dashboard):
            series = influx1.query(_expand(query))
            assert series, f"{path.name}: no data for {query}"
