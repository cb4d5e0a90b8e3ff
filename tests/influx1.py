"""A real InfluxDB 1.6 server (Debian's `influxdb`) for running InfluxQL dashboard queries.

influxdb-client cannot write to 1.6 (no /api/v2/write before 1.8), so tests load line
protocol through /write?db= and query through /query, exactly as Grafana's InfluxQL data
source does.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet.broker import free_port, wait_for_port


@dataclass
class Influx1:
    url: str

    def query(self, q: str, db: str = "syncclass") -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=10) as resp:
            body = json.load(resp)
        result = body["results"][0]
        if "error" in result:
            raise AssertionError(f"InfluxQL error for {q!r}: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def write(self, lines: str, db: str = "syncclass") -> None:
        req = urllib.request.Request(
            f"{self.url}/write?db={db}&precision=ms", data=lines.encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204


@pytest.fixture
def influx1(tmp_path: Path) -> Iterator[Influx1]:
    port, rpc = free_port(), free_port()
    root = tmp_path / "influx"
    conf = tmp_path / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{root}/meta"\n'
        f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
    )
    proc = subprocess.Popen(["influxd", "-config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=20)
        server = Influx1(f"http://127.0.0.1:{port}")
        server.query("CREATE DATABASE syncclass", db="")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
