"""The agent's resident memory and CPU per interval, next to prometheus-node-exporter's.

At production defaults: the agent's 15 s interval, both backends (the Linux one on this
machine's own devices, and the simulated classroom), publishing to a private Mosquitto.
node_exporter is pull-based, so it is scraped once per interval: a scrape is its unit of
work.  All three run at once and are sampled in the same windows, so a noisy machine
slows them alike; each window gives one ratio, and the figures are min and median over
the windows.  CPU counts the whole process tree (ffmpeg and other children included).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import ProcessSample, sample_process
from fleet.broker import Mosquitto, free_port, wait_for_port

__all__ = ["run"]

INTERVAL_S = 15.0  # the agent's default
WARMUP_INTERVALS = 2
WINDOWS = 3
INTERVALS_PER_WINDOW = 6


@dataclass
class Subject:
    name: str
    pid: int
    tick: Callable[[], None] | None = None  # work done for it once per interval


@dataclass(frozen=True)
class Window:
    rss_mib: float
    cpu_ms: float  # per interval


@contextmanager
def _agent(workdir: Path, broker: Mosquitto, backend: str) -> Iterator[Subject]:
    root = workdir / backend
    root.mkdir()
    config = root / "agent.toml"
    config.write_text(
        f'device_id = "bench-{backend}"\n[mqtt]\nurl = "{broker.url}"\n'
        f'[hardware]\nbackend = "{backend}"\n'
        f'[agent]\ninterval = {INTERVAL_S}\nstate_dir = "{root / "state"}"\n'
    )
    exe = Path(sys.executable).with_name("syncclass-agent")
    proc = subprocess.Popen([str(exe), "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Subject(f"syncclass-agent ({backend})", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def _node_exporter(exe: str) -> Iterator[Subject]:
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> None:
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()

    try:
        wait_for_port(port)
        yield Subject("prometheus-node-exporter", proc.pid, scrape)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _windows(subjects: list[Subject]) -> dict[str, list[Window]]:
    def intervals(n: int) -> None:
        for _ in range(n):
            time.sleep(INTERVAL_S)
            for s in subjects:
                if s.tick is not None:
                    s.tick()

    intervals(WARMUP_INTERVALS)
    out: dict[str, list[Window]] = {s.name: [] for s in subjects}
    for _ in range(WINDOWS):
        start: dict[str, ProcessSample] = {s.name: sample_process(s.pid) for s in subjects}
        intervals(INTERVALS_PER_WINDOW)
        for s in subjects:
            end = sample_process(s.pid)
            cpu_ms = (end.cpu_s - start[s.name].cpu_s) * 1000 / INTERVALS_PER_WINDOW
            out[s.name].append(Window(end.rss_mib, cpu_ms))
    return out


def _print(name: str, windows: list[Window], ref: list[Window] | None) -> None:
    rss = [w.rss_mib for w in windows]
    cpu = [w.cpu_ms for w in windows]
    line = (f"  {name:<34} RSS {min(rss):6.1f}/{statistics.median(rss):6.1f} MiB   "
            f"CPU {min(cpu):6.2f}/{statistics.median(cpu):6.2f} ms per interval")
    if ref is not None:
        rss_r = [w.rss_mib / r.rss_mib for w, r in zip(windows, ref, strict=True)]
        cpu_r = [w.cpu_ms / max(r.cpu_ms, 1e-6) for w, r in zip(windows, ref, strict=True)]
        line += (f"   ratio to node_exporter: RSS {min(rss_r):.2f}/{statistics.median(rss_r):.2f}x"
                 f", CPU {min(cpu_r):.2f}/{statistics.median(cpu_r):.2f}x")
    print(line)


def run() -> None:
    total = (WARMUP_INTERVALS + WINDOWS * INTERVALS_PER_WINDOW) * INTERVAL_S
    print(f"agent footprint: {WINDOWS} windows of {INTERVALS_PER_WINDOW} x {INTERVAL_S:.0f} s "
          f"intervals after {WARMUP_INTERVALS} warm-up ({total:.0f} s); min/median")
    exe = shutil.which("prometheus-node-exporter")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        broker = stack.enter_context(Mosquitto(workdir=Path(tmp) / "mq"))
        subjects = [stack.enter_context(_agent(Path(tmp), broker, b))
                    for b in ("linux", "simulated")]
        if exe is not None:
            subjects.append(stack.enter_context(_node_exporter(exe)))
        results = _windows(subjects)
    ref = results.get("prometheus-node-exporter")
    if ref is None:
        print("  prometheus-node-exporter not installed: no reference")
    for name, windows in results.items():
        _print(name, windows, None if windows is ref else ref)
