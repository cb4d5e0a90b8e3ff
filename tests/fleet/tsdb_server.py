"""A real VictoriaMetrics for the time-series tests (fixture ``victoria``) and benchmarks."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleet.broker import free_port

__all__ = ["VictoriaMetrics", "victoria"]


@dataclass
class VictoriaMetrics:
    data_dir: Path
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics")
        if binary is None:  # `make test` installs it: a missing server is a failure
            raise FileNotFoundError("victoria-metrics is not installed (Debian: victoria-metrics)")
        self._proc = subprocess.Popen(
            [binary, f"-storageDataPath={self.data_dir}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=1d",
             "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.read().strip() == b"OK":
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("victoria-metrics did not become ready")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(15)

    def export(
        self, match: str, min_series: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The series matching ``match`` (/api/v1/export), polled until ``min_series`` show."""
        query = urllib.parse.urlencode({"match[]": match})
        deadline = time.monotonic() + timeout
        while True:
            urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).close()
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=5) as resp:
                series = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
            if len(series) >= min_series or time.monotonic() > deadline:
                return series
            time.sleep(0.1)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "vm").start()
    try:
        yield vm
    finally:
        vm.stop()
