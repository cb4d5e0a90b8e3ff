"""The unit's syscall filter against what the agent really calls.

The agent runs under ``strace -f`` (its children too: seccomp filters are inherited across
fork and exec) for a pre-class check on the Linux backend (psutil, sysfs, the kernel
clock, ping), a simulated check, and a daemon run on the Linux backend that publishes
telemetry to a real Mosquitto and stops on SIGTERM.  Every syscall seen must be in the
sets the unit allows, as ``systemd-analyze syscall-filter`` expands them: one outside
would be SIGSYS (the allow list) or EPERM (``ProtectClock=``'s deny list) under systemd.
The clock is read with adjtimex(2) on every collection, so the path that used to run
only when timedatectl failed, and killed the agent, is in every trace.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import psutil
import pytest

from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber
from tests.waiting import wait_until

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "syncclass-agent.service"
ROOT = UNIT.parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None or shutil.which("systemd-analyze") is None,
    reason="needs strace and systemd-analyze (Makefile DEBS_TEST)")

_CALL = re.compile(r"^\d+\s+([a-z0-9_]+)\(")
_SOCKET = re.compile(r"^\d+\s+socket(?:pair)?\((AF_[A-Z0-9]+)")


@cache
def _syscall_sets() -> dict[str, list[str]]:
    """``@set`` -> its members (syscalls and nested ``@sets``), as this systemd knows them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    sets: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
    return sets


def _expand(names: list[str]) -> set[str]:
    sets = _syscall_sets()
    found: set[str] = set()
    for name in names:
        if name.startswith("@"):
            assert name in sets, f"systemd knows no syscall set {name}"
            found |= _expand(sets[name])
        else:
            found.add(name)
    return found


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def allowed_syscalls() -> set[str]:
    """What survives the unit's filters: allow lists, then ``~`` deny lists, ProtectClock."""
    settings = _unit_settings()
    allowed: set[str] = set()
    denied: set[str] = set()
    for value in settings.get("SystemCallFilter", []):
        if value.startswith("~"):
            denied |= _expand(value[1:].split())
        else:
            allowed |= _expand(value.split())
    if settings.get("ProtectClock", ["no"])[-1] == "yes":
        denied |= _expand(["@clock"])
    assert allowed, "the unit has no allow-list SystemCallFilter="
    return allowed - denied


def allowed_families() -> set[str]:
    families = set(" ".join(_unit_settings()["RestrictAddressFamilies"]).split())
    return families | ({"AF_LOCAL"} if "AF_UNIX" in families else set())


def _traced(trace: Path, *args: str) -> list[str]:
    return ["strace", "-f", "-qq", "-o", str(trace), "--", sys.executable, "-m", "agent.cli",
            *args]


def _calls(trace: Path) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    families: set[str] = set()
    for line in trace.read_text().splitlines():
        if m := _CALL.match(line):
            names.add(m.group(1))
        if m := _SOCKET.match(line):
            families.add(m.group(1))
    return names, families


@pytest.fixture
def linux_config(tmp_path: Path, broker: Mosquitto) -> Iterator[Path]:
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "strace-room"\n'
        f'[mqtt]\nurl = "{broker.url}"\n'
        '[hardware]\nbackend = "linux"\n'
        # Pings and a name lookup: ICMP sockets, DNS, /etc/hosts.
        '[network.targets]\nloopback = "127.0.0.1"\nlocalname = "localhost"\n'
        f'[agent]\ninterval = 1\nstate_dir = "{tmp_path / "state"}"\n')
    yield config


def test_every_syscall_of_a_real_agent_run_passes_the_units_filter(
        tmp_path: Path, broker: Mosquitto, linux_config: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    traces = []
    for i, args in enumerate([("check", "--config", str(linux_config)),
                              ("check", "--config", str(linux_config), "--simulate")]):
        traces.append(tmp_path / f"check-{i}.trace")
        done = subprocess.run(_traced(traces[-1], *args), env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, 1, 2), done.stderr  # pass / warn / fail verdicts

    sub = Subscriber(broker.port, [f"{PREFIX}/dev/strace-room/telemetry"])
    traces.append(tmp_path / "run.trace")
    tracer = subprocess.Popen(_traced(traces[-1], "run", "--config", str(linux_config)),
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        # Two collections: the second one runs in the daemon's steady state.
        [(_, telemetry, _), _] = sub.wait_for(lambda m: True, timeout=60, count=2)
        assert "clock_synced" in telemetry["sections"]["system"]
        assert wait_until(lambda: bool(psutil.Process(tracer.pid).children()), 10)
        [agent] = psutil.Process(tracer.pid).children()
        agent.send_signal(signal.SIGTERM)
        _, stderr = tracer.communicate(timeout=30)
        assert tracer.returncode == 0, stderr
    finally:
        sub.close()
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait(10)

    names: set[str] = set()
    families: set[str] = set()
    for trace in traces:
        found, socks = _calls(trace)
        names |= found
        families |= socks
    assert {"clock_adjtime", "adjtimex"} & names, "the clock was not read"
    assert names - allowed_syscalls() == set(), "these syscalls would be refused"
    assert families - allowed_families() == set(), "these address families are refused"


def test_the_filter_check_can_fail() -> None:
    """Guards the check itself: systemd's sets parse and leave real calls out."""
    allowed = allowed_syscalls()
    assert {"read", "openat", "clone", "connect", "recvmsg"} <= allowed
    assert not {"reboot", "settimeofday", "kexec_load", "init_module", "ptrace"} & allowed
