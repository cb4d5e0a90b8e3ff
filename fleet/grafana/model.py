"""What a push puts into Grafana: the InfluxQL data source, the folder and the dashboards.

The same objects as the file provisioning in ``provisioning/grafana/`` (a test holds the
two together), so a county may use either and the dashboards find their data source by
the same uid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARDS_DIR",
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "DashboardError",
    "InfluxSource",
    "datasource_refs",
    "load_dashboards",
    "point_at",
]

DATASOURCE_NAME = "syncclass"
DATASOURCE_UID = "syncclass-influxql"  # what dashboards/*.json reference
FOLDER_TITLE = "同步课堂 syncclass"
FOLDER_UID = "syncclass"
DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"


class DashboardError(ValueError):
    """A dashboard file that cannot be pushed; the message is one bilingual line."""


@dataclass(frozen=True)
class InfluxSource:
    """The InfluxDB that the fleet writes to, as Grafana should query it (InfluxQL)."""

    url: str = "http://127.0.0.1:8086"
    database: str = "syncclass"  # InfluxDB 2/3: the bucket, through a DBRP mapping
    # An InfluxDB 2/3 API token with read access; Grafana sends it as "Authorization:
    # Token …" and keeps it encrypted (secureJsonData), never returning it.
    token: str = ""
    name: str = DATASOURCE_NAME
    uid: str = DATASOURCE_UID

    def json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"dbName": self.database, "httpMode": "GET",
                                "timeInterval": "15s"}
        if self.token:
            data["httpHeaderName1"] = "Authorization"
        return data

    def model(self) -> dict[str, Any]:
        """The body of Grafana's create/update data source call."""
        body: dict[str, Any] = {
            "name": self.name, "uid": self.uid, "type": "influxdb", "access": "proxy",
            "url": self.url, "jsonData": self.json_data(),
        }
        if self.token:
            body["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        return body


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` dashboard in a directory, each with its uid and title."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise DashboardError(f"{directory} 中没有仪表盘 JSON / no dashboard JSON in {directory}: "
                             "give --dashboards DIR")
    dashboards = []
    for path in paths:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DashboardError(f"无法读取仪表盘 {path} / cannot read dashboard {path}: "
                                 f"{exc}") from None
        if not (isinstance(dashboard, dict) and isinstance(dashboard.get("uid"), str)
                and dashboard["uid"] and isinstance(dashboard.get("title"), str)):
            raise DashboardError(f"仪表盘 {path} 缺少 uid 或 title / dashboard {path} has no "
                                 "uid or title: without its uid a push would duplicate it")
        dashboards.append(dashboard)
    return dashboards


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict):
            yield ref
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def datasource_refs(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``{"type": …, "uid": …}`` data source reference in a dashboard."""
    return list(_walk(dashboard))


def point_at(dashboard: dict[str, Any], uid: str) -> dict[str, Any]:
    """A copy of the dashboard whose references to our data source use ``uid``.

    The pushed data source keeps the uid it already has in that Grafana (one made by
    hand under our name, say), so the dashboards must follow it.
    """
    copy: dict[str, Any] = json.loads(json.dumps(dashboard))
    for ref in datasource_refs(copy):
        if ref.get("uid") == DATASOURCE_UID:
            ref["uid"] = uid
    return copy
