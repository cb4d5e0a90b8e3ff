"""Machine facts from psutil, sysfs and the kernel: load, disk, temperature, clock sync, displays.

The sysfs root is a parameter (node_exporter's ``--path.sysfs``) so that tests read
fixture trees; this machine, like many VMs, has no ``/sys/class/drm`` at all.
"""

from __future__ import annotations

import platform
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from agent.compat import UTC
from agent.hardware.base import Display, SystemStats
from agent.hardware.thermal import cpu_temperature
from agent.hardware.timex import clock_status

__all__ = ["clock_synced", "displays", "edid_monitor_name", "host_facts", "system_stats"]

def system_stats(disk_path: str = "/") -> SystemStats:
    boot = psutil.boot_time()
    return SystemStats(
        cpu_pct=psutil.cpu_percent(interval=None),  # since the previous call
        mem_pct=psutil.virtual_memory().percent,
        disk_pct=psutil.disk_usage(disk_path).percent,
        temp_c=cpu_temperature(psutil.sensors_temperatures()),
        uptime_s=max(0.0, datetime.now(UTC).timestamp() - boot),
        boot_time=datetime.fromtimestamp(boot, UTC),
        clock_synced=clock_synced(),
    )


def clock_synced() -> bool | None:
    """timedatectl's NTPSynchronized, asked of the kernel (no process, no D-Bus)."""
    status = clock_status()
    return None if status is None else status.synced


def edid_monitor_name(edid: bytes) -> str:
    """The monitor name descriptor (tag 0xFC) of an EDID base block, or ""."""
    if len(edid) < 128 or edid[:8] != b"\x00\xff\xff\xff\xff\xff\xff\x00":
        return ""
    for offset in (54, 72, 90, 108):
        block = edid[offset : offset + 18]
        if block[:3] == b"\x00\x00\x00" and block[3] == 0xFC:
            return block[5:].split(b"\n")[0].decode("cp437").strip()
    return ""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def displays(sysfs_root: Path) -> list[Display]:
    """DRM connectors (``class/drm/cardN-CONNECTOR/status``), writeback ones excluded."""
    found = []
    for status in sorted((sysfs_root / "class" / "drm").glob("card*-*/status")):
        conn = status.parent
        if "Writeback" in conn.name:
            continue
        enabled = _read(conn / "enabled")
        try:
            edid = (conn / "edid").read_bytes()
        except OSError:
            edid = b""
        found.append(Display(
            id=conn.name,
            connected=_read(status) == "connected",
            enabled=None if not enabled else enabled == "enabled",
            monitor=edid_monitor_name(edid),
        ))
    return found


def host_facts() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "cpus": psutil.cpu_count() or 0,
        "mem_bytes": psutil.virtual_memory().total,
        "boot_time": datetime.fromtimestamp(psutil.boot_time(), UTC).isoformat(),
    }


def net_bytes() -> tuple[int, int]:
    counters = psutil.net_io_counters(pernic=True)
    sent = sum(c.bytes_sent for name, c in counters.items() if name != "lo")
    received = sum(c.bytes_recv for name, c in counters.items() if name != "lo")
    return sent, received
