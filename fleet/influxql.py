"""A device's charted figures read back from InfluxDB 1.x's ``/query`` (InfluxQL), the
same API the Grafana dashboards use; the series the ``TelemetryWriter`` wrote, averaged
into the page's buckets by the server."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from fleet.history import FIGURES, SPANS, HistoryConfig, Series, Span

__all__ = ["HistoryUnavailable", "read_influxql"]


class HistoryUnavailable(Exception):
    """The time-series store did not answer (the message says why, for the page)."""


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _queries(device_id: str, span: Span, now: datetime) -> str:
    spec = SPANS[span]
    end = int(now.timestamp() * 1000)
    start = end - int(spec.length.total_seconds() * 1000)
    bucket = f"{int(spec.bucket.total_seconds())}s"
    by_section: dict[str, list[str]] = {}
    for figure in FIGURES:
        by_section.setdefault(figure.section, []).append(figure.field)
    statements = []
    for section, fields in by_section.items():
        per_target = section == "network"
        means = ", ".join(f'mean("{f}") AS "{f}"' for f in fields)
        where = (f'"device" = {_quoted(device_id)} AND time >= {start}ms AND time <= {end}ms'
                 + (" AND \"entity\" =~ /^target:/" if per_target else
                    " AND \"entity\" = ''"))
        group = f"time({bucket})" + (', "entity"' if per_target else "")
        statements.append(f'SELECT {means} FROM "syncclass_{section}" WHERE {where} '
                          f"GROUP BY {group} fill(none)")
    return "; ".join(statements)


def read_influxql(config: HistoryConfig, device_id: str, span: Span,
                  now: datetime) -> list[Series]:
    params = {"db": config.database, "q": _queries(device_id, span, now), "epoch": "ms"}
    if config.username:
        params |= {"u": config.username, "p": config.password}
    url = config.influxql_url.rstrip("/") + "/query?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=config.timeout_s) as response:
            body: dict[str, Any] = json.load(response)
    except (OSError, ValueError) as exc:
        raise HistoryUnavailable(str(exc)) from None
    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for result in body.get("results", []):
        if "error" in result:
            raise HistoryUnavailable(str(result["error"]))
        for series in result.get("series", []):
            target = str((series.get("tags") or {}).get("entity", "")).removeprefix("target:")
            columns = series["columns"]
            for row in series["values"]:
                for name, value in zip(columns[1:], row[1:], strict=True):
                    if isinstance(value, int | float):
                        found.setdefault((name, target), []).append((int(row[0]),
                                                                     round(value, 3)))
    return [Series(field, target, points) for (field, target), points in found.items()]
