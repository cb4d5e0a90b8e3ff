"""Several real ``syncclass-fleet serve`` processes on one database and one broker.

Each process is started the way systemd starts it (``python -m fleet.cli serve --config
X``), with its own TOML file, HTTP port, MQTT client id and log file; the processes share
the database, the broker and the command-signing key.  A test kills one with SIGKILL
(:meth:`FleetProcess.kill`), stops it as systemd does (:meth:`FleetProcess.stop`),
starts it again, and reads each one's ``/healthz``, ``/metrics`` and API over HTTP.

Settings are the nested dict of the fleet's TOML (tables ``database``, ``mqtt``, ...);
:func:`fleet_settings` gives the shared base and ``overrides`` are merged over it, for all
processes (:class:`FleetProcs`) or one (:meth:`FleetProcs.add`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fleet.actions.signer import Signer
from fleet.broker import free_port
from tests.e2e.world import FLEET_PASSWORD

__all__ = ["FleetProcess", "FleetProcs", "fleet_settings", "merged", "toml_text"]

ROOT = Path(__file__).resolve().parents[2]
# SIGTERM to exit: the unit's TimeoutStopSec is 90 s; a test does not wait that long.
STOP_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, table by table (a deep copy of neither's dicts
    is shared with the result)."""
    out: dict[str, Any] = {k: merged(v, {}) if isinstance(v, Mapping) else v
                           for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = merged(value, {}) if isinstance(value, Mapping) else value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(settings: Mapping[str, Any], prefix: str = "") -> str:
    """The TOML of nested tables of plain values (what the fleet's config takes)."""
    plain = [f"{k} = {_toml_value(v)}" for k, v in settings.items()
             if not isinstance(v, Mapping)]
    lines = ([f"[{prefix}]"] if prefix and plain else []) + plain
    for key, value in settings.items():
        if isinstance(value, Mapping):
            lines.append(toml_text(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(lines) + "\n"


def fleet_settings(workdir: Path, database_url: str, mqtt_url: str,
                   smtp_port: int | None = None) -> dict[str, Any]:
    """What every process of one cluster shares: the database, the broker (as the
    e2e broker's ``fleet`` client), one signing key, short notification paths and, with
    ``smtp_port``, a real mailbox."""
    settings: dict[str, Any] = {
        "database": {"url": database_url},
        "mqtt": {"url": mqtt_url, "username": "fleet", "password": FLEET_PASSWORD,
                 "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
        "actions": {"key_file": str(workdir / "fleet-ed25519.key")},
        "alerts": {"group_wait_s": 0.0},
        "notify": {"poll_interval_s": 0.1, "backoff_initial_s": 1.0},
    }
    if smtp_port is not None:
        settings["notify"]["email"] = {"host": "127.0.0.1", "port": smtp_port,
                                       "sender": "同步课堂运维 <syncclass@example.cn>"}
    return settings


class FleetProcess:
    """One ``syncclass-fleet serve`` process; ``start`` may be called again after it
    ended (same config, port and client id: a restart)."""

    def __init__(self, name: str, workdir: Path, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.port = 0
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        # A fixed client id of its own, as in production: the configured one, else the
        # fleet derives syncclass-fleet-<host>-<instance> and the instance is the name.
        self.settings = merged(settings, {"http": {"host": "127.0.0.1"},
                                          "mqtt": {"instance": name}})
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self._proc is not None, f"{self.name} was never started"
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> FleetProcess:
        assert not self.alive, f"{self.name} is already running"
        # A port of its own at every start: one picked earlier may be taken meanwhile.
        self.port = free_port()
        self.settings["http"]["port"] = self.port
        self.config_path.write_text(toml_text(self.settings), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts + 1}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "serve", "--config", str(self.config_path)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until ``/healthz`` says the database and the broker are reachable."""
        deadline = time.monotonic() + timeout
        retries = 3
        while True:
            if not self.alive and "address already in use" in self.log_tail(300) and retries:
                retries -= 1  # another program took the free port first
                self.start()
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                if self.get_json("/healthz").get("status") == "ok":
                    return
            except (OSError, ValueError):
                pass  # not listening yet, or 503 while connecting
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout:.0f}s:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final flush, connections dropped by the kernel."""
        if self.alive:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int | None:
        """SIGTERM, as systemd stops the unit; the exit code (None if never started)."""
        if self._proc is None:
            return None
        if self.alive:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s:"
                                     f"\n{self.log_tail()}") from None
        return self._proc.returncode

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get_json(self, path: str, timeout: float = 5.0) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:  # 503 still has a body worth reading
            body = json.load(exc)
        return body

    def metrics(self, timeout: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                     float]:
        """Every sample of ``/metrics``, keyed by (name, sorted labels)."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=timeout) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value; 0 when the process has not counted it."""
        for (sample, sample_labels), value in self.metrics().items():
            if sample == name and all(dict(sample_labels).get(k) == v
                                      for k, v in labels.items()):
                return value
        return 0.0

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


class FleetProcs:
    """The cluster: ``add`` processes, ``start`` them together, ``close`` stops all."""

    def __init__(self, workdir: Path, settings: Mapping[str, Any]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings = dict(settings)
        # Made once here: processes starting together must not each generate a key.
        self.signer = Signer.from_file(Path(self.settings["actions"]["key_file"]))
        self.processes: list[FleetProcess] = []

    @property
    def public_key(self) -> str:
        """What the agents verify the fleet's commands with."""
        return self.signer.public_key_b64

    def add(self, count: int = 1, **overrides: Any) -> list[FleetProcess]:
        added = [FleetProcess(f"fleet{len(self.processes) + i + 1}", self.workdir,
                              merged(self.settings, overrides))
                 for i in range(count)]
        self.processes += added
        return added

    def start(self) -> FleetProcs:
        """Start every process not running, then wait until all are ready."""
        starting = [p.start() for p in self.processes if not p.alive]
        for process in starting:
            process.wait_ready()
        return self

    def __iter__(self) -> Iterator[FleetProcess]:
        return iter(self.processes)

    def __getitem__(self, index: int) -> FleetProcess:
        return self.processes[index]

    @property
    def alive(self) -> list[FleetProcess]:
        return [p for p in self.processes if p.alive]

    def close(self) -> None:
        for process in self.processes:
            if process.alive:
                assert process._proc is not None
                process._proc.send_signal(signal.SIGTERM)
        for process in self.processes:
            # One that ignored SIGTERM is killed by stop(); the rest are stopped regardless.
            with contextlib.suppress(AssertionError):
                process.stop()

    def __enter__(self) -> FleetProcs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
