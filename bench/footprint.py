"""The agent's resident memory and CPU per interval, next to prometheus-node-exporter's.

Both run in the same command for the same number of intervals: the agent publishing
telemetry from the simulated backend to a private Mosquitto, node_exporter scraped once
per interval (it is pull-based, so a scrape is its unit of work).  Ratios agent/node_exporter
are what to compare between runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import ProcessSample, sample_process
from fleet.broker import Mosquitto, free_port, wait_for_port

__all__ = ["run"]

INTERVAL_S = 1.0
WARMUP = 5
INTERVALS = 30


def _measure(pid: int, tick: object) -> tuple[ProcessSample, ProcessSample]:
    for _ in range(WARMUP):
        time.sleep(INTERVAL_S)
        if callable(tick):
            tick()
    start = sample_process(pid)
    for _ in range(INTERVALS):
        time.sleep(INTERVAL_S)
        if callable(tick):
            tick()
    return start, sample_process(pid)


def _agent(workdir: Path, broker: Mosquitto) -> tuple[ProcessSample, ProcessSample]:
    config = workdir / "agent.toml"
    config.write_text(
        f'device_id = "bench-agent"\n[mqtt]\nurl = "{broker.url}"\n'
        f'[hardware]\nbackend = "simulated"\n'
        f'[agent]\ninterval = {INTERVAL_S}\nstate_dir = "{workdir / "state"}"\n'
    )
    exe = Path(sys.executable).with_name("syncclass-agent")
    proc = subprocess.Popen([str(exe), "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _measure(proc.pid, None)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _node_exporter() -> tuple[ProcessSample, ProcessSample] | None:
    exe = shutil.which("prometheus-node-exporter")
    if exe is None:
        return None
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> None:
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()

    try:
        wait_for_port(port)
        return _measure(proc.pid, scrape)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _row(name: str, a: ProcessSample, b: ProcessSample) -> tuple[float, float]:
    cpu_ms = (b.cpu_s - a.cpu_s) * 1000 / INTERVALS
    print(f"  {name:<26} RSS {b.rss_mib:7.1f} MiB   CPU {cpu_ms:7.2f} ms/interval")
    return b.rss_mib, cpu_ms


def run() -> None:
    print(f"agent footprint ({INTERVALS} intervals of {INTERVAL_S:.0f} s after {WARMUP} warm-up)")
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(workdir=Path(tmp) / "mq") as broker:
        agent_rss, agent_cpu = _row("syncclass-agent", *_agent(Path(tmp), broker))
    ne = _node_exporter()
    if ne is None:
        print("  prometheus-node-exporter not installed: no reference")
        return
    ne_rss, ne_cpu = _row("prometheus-node-exporter", *ne)
    print(f"  ratio agent/node_exporter: RSS {agent_rss / ne_rss:.2f}x, "
          f"CPU per interval {agent_cpu / max(ne_cpu, 1e-6):.2f}x")
