"""The Linux backend on what this machine has: sysfs fixture trees, pyudev's `net`, psutil."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pyudev

from agent.compat import UTC
from agent.hardware import open_backend
from agent.hardware.linux import LinuxHardware
from agent.hardware.sysinfo import clock_synced, displays, edid_monitor_name, system_stats
from agent.hardware.timex import clock_status, read_timex
from agent.hardware.udev import bus_path, describe, monitor, sound_devices, video_devices

FIXTURES = Path(__file__).parent / "fixtures"


def test_displays_from_a_classroom_sysfs_tree() -> None:
    found = {d.id: d for d in displays(FIXTURES / "sysfs-classroom")}
    assert set(found) == {"card0-HDMI-A-1", "card0-DP-1"}  # no card0, no writeback
    hdmi, dp = found["card0-HDMI-A-1"], found["card0-DP-1"]
    assert (hdmi.connected, hdmi.enabled, hdmi.monitor) == (True, True, "EPSON PJ")
    assert (dp.connected, dp.enabled, dp.monitor) == (False, False, "")


def test_unplugged_projector_and_missing_drm() -> None:
    [hdmi] = displays(FIXTURES / "sysfs-unplugged")
    assert not hdmi.connected
    assert displays(Path("/nonexistent")) == []


def test_edid_without_header_or_name() -> None:
    edid = (FIXTURES / "sysfs-classroom/class/drm/card0-HDMI-A-1/edid").read_bytes()
    assert edid_monitor_name(edid[:100]) == ""
    assert edid_monitor_name(b"\x01" * 128) == ""
    nameless = edid[:54] + bytes(18) + edid[72:]
    assert edid_monitor_name(nameless) == ""


def test_system_stats_of_this_machine() -> None:
    stats = system_stats()
    assert 0 <= stats.cpu_pct <= 100 and 0 < stats.mem_pct < 100 and 0 < stats.disk_pct <= 100
    assert stats.boot_time < datetime.now(UTC) and stats.uptime_s > 0
    assert stats.temp_c is None or stats.temp_c > 0
    # The kernel answers even without systemd; this VM runs no NTP daemon.
    assert clock_synced() in (True, False)


def test_struct_timex_layout_matches_the_kernel() -> None:
    """Fields the kernel always fills with constants land where ctypes reads them."""
    tx = read_timex()
    assert tx is not None
    assert (tx.tolerance, tx.precision) == (500 << 16, 1)  # MAXFREQ_SCALED / PPM_SCALE
    assert tx.modes == 0 and 0 < tx.tick <= 10_000  # USER_HZ ticks of 1 to 10 ms
    status = clock_status()
    assert status is not None
    assert status.synced == (status.maxerror_us < 16_000_000)


def test_udev_describes_network_devices() -> None:
    context = pyudev.Context()
    nets = {d.sys_name: d for d in context.list_devices(subsystem="net")}
    assert "lo" in nets
    assert describe(nets["lo"])["bus_path"] == ""  # virtual: no bus
    physical = [d for d in nets.values() if not d.sys_path.startswith("/sys/devices/virtual")]
    for dev in physical:
        path = bus_path(dev)
        pci = next(a for a in dev.ancestors if a.subsystem == "pci")
        assert path == f"pci-{pci.sys_name}"
        assert set(describe(dev)) == {"vendor", "model", "serial", "bus_path"}


def test_no_cameras_or_sound_cards_here_is_an_empty_list() -> None:
    context = pyudev.Context()
    assert video_devices(context) == []
    assert sound_devices(context, capture=True) == []
    assert sound_devices(context, capture=False) == []


def test_hotplug_monitor_starts_and_stops() -> None:
    calls: list[int] = []
    stop = monitor(pyudev.Context(), lambda: calls.append(1))
    stop()
    stop()
    assert calls == []


def test_linux_backend_inventory_and_watch() -> None:
    hw = open_backend("linux", sysfs_root=FIXTURES / "sysfs-classroom",
                      extra_cameras={"ipcam": "rtsp://10.0.0.9/main"},
                      extra_microphones={"room": "default"})
    assert isinstance(hw, LinuxHardware)
    inv = hw.inventory()
    assert [c["id"] for c in inv["cameras"]] == ["ipcam"]
    assert inv["cameras"][0]["node"] == "rtsp://10.0.0.9/main"
    assert [m["pcm"] for m in inv["microphones"]] == ["default"]
    assert [d["monitor"] for d in inv["displays"]] == ["", "EPSON PJ"]  # sorted by connector
    assert inv["host"]["backend"] == "linux" and inv["host"]["cpus"] >= 1
    events: list[dict[str, Any]] = []
    stop = hw.watch(events.append)
    stop()
    assert events == []
    sent, received = hw.net_bytes()
    assert sent >= 0 and received >= 0


@pytest.mark.parametrize("kind", ["linux", "simulated"])
def test_every_backend_answers_system(kind: str) -> None:
    stats = open_backend(kind).system()
    assert stats.uptime_s > 0
