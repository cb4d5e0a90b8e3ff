"""The simulated classroom: scenario files, timed faults on an injected clock, hot-plug."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.compat import UTC
from agent.hardware import open_backend
from agent.hardware.base import HardwareError
from agent.hardware.scenario import Fault, load_scenario
from agent.hardware.simulated import SimulatedHardware
from agent.probes.camera import criteria
from agent.settings import ConfigError
from agent.thresholds import Thresholds
from tests.clock import ManualClock

DEMO = Path(__file__).parents[2] / "agent" / "hardware" / "scenarios" / "demo.toml"
TEACHER = "usb-0000:00:14.0-1"
MIC = "usb-0000:00:14.0-3"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))


def test_demo_scenario_faults_start_at_and_end_at_until(clock: ManualClock) -> None:
    hw = open_backend("simulated", scenario=DEMO, clock=clock)
    assert isinstance(hw, SimulatedHardware)
    assert {c.id for c in hw.cameras()} == {TEACHER, "usb-0000:00:14.0-2"}
    clock.advance(29.9)
    assert len(hw.cameras()) == 2
    clock.advance(0.1)  # t = 30: unplugged
    assert [c.id for c in hw.cameras()] == ["usb-0000:00:14.0-2"]
    clock.advance(60)  # t = 90: `until` reached, plugged back
    assert len(hw.cameras()) == 2


def test_packet_loss_fault_shows_in_pings(clock: ManualClock) -> None:
    hw = open_backend("simulated", scenario=DEMO, clock=clock)
    healthy = hw.ping("peer.example")
    assert healthy.loss_pct == 0 and healthy.rtt_ms == pytest.approx(18)
    assert healthy.jitter_ms == pytest.approx(2)
    clock.advance(61)
    assert hw.ping("peer.example").loss_pct == pytest.approx(8)
    assert hw.ping("broker.example:1883").loss_pct == pytest.approx(8)  # empty device: all


def test_silent_and_clipping_microphone(clock: ManualClock) -> None:
    hw = SimulatedHardware(load_scenario(DEMO), clock=clock)
    mic = hw.microphones()[0]
    assert any(hw.record(mic, 0.1).samples)
    clock.advance(45)
    assert not any(hw.record(mic, 0.1).samples)
    hw.clear("mic_silent", MIC)
    assert any(hw.record(mic, 0.1).samples)
    hw.apply(Fault("mic_clipping", device=MIC))
    assert max(hw.record(mic, 0.1).samples) == 32767


def test_camera_faults_change_the_picture(clock: ManualClock) -> None:
    hw = SimulatedHardware(clock=clock)
    cam = hw.cameras()[0]
    crit = criteria(Thresholds())
    live = hw.sample_picture(cam, crit)
    assert not live.black and not live.frozen
    hw.apply(Fault("camera_frozen", device=cam.id))
    frozen = hw.sample_picture(cam, crit)
    assert frozen.frozen and frozen.frozen_s == crit.frozen_min_s and not frozen.black
    hw.apply(Fault("camera_black"))
    assert hw.sample_picture(cam, crit).black
    hw.apply(Fault("camera_unplugged", device=cam.id))
    with pytest.raises(HardwareError) as err:
        hw.sample_picture(cam, crit)
    assert err.value.reason == "camera_missing"


def test_system_network_faults(clock: ManualClock) -> None:
    hw = SimulatedHardware(clock=clock)
    assert hw.system().clock_synced is True
    for fault in (Fault("disk_full"), Fault("overheat", value=97), Fault("clock_unsynced"),
                  Fault("bandwidth_up", value=1.5), Fault("dns_failure", device="fleet.example")):
        hw.apply(fault)
    stats = hw.system()
    assert (stats.disk_pct, stats.temp_c, stats.clock_synced) == (99.0, 97, False)
    assert hw.upload("http://x/", 1, 1) == 1.5
    with pytest.raises(HardwareError):
        hw.resolve("fleet.example")
    assert hw.resolve("other.example") == 5.0
    clock.advance(10)
    assert hw.system().uptime_s == pytest.approx(3610)


def test_capture_icmp_and_probe_faults_fail_as_the_linux_backend_does(
        clock: ManualClock) -> None:
    hw = SimulatedHardware(clock=clock)
    camera = next(c for c in hw.cameras() if c.id == TEACHER)
    microphone = next(m for m in hw.microphones() if m.id == MIC)
    for fault in (Fault("camera_capture_failed", device=TEACHER),
                  Fault("mic_capture_failed", device=MIC),
                  Fault("icmp_not_permitted"), Fault("dns_slow", device="slow.example"),
                  Fault("probe_error")):
        hw.apply(fault)
    with pytest.raises(HardwareError) as failed:
        hw.sample_picture(camera, criteria(Thresholds()))
    assert failed.value.reason == "camera_capture_failed"
    with pytest.raises(HardwareError) as failed:
        hw.record(microphone)
    assert failed.value.reason == "microphone_capture_failed"
    with pytest.raises(HardwareError) as failed:
        hw.ping("127.0.0.1")
    assert (failed.value.reason, failed.value.cause) == ("icmp_not_permitted",) * 2
    assert hw.ping("127.0.0.1:443").received > 0, "TCP connect needs no permission"
    assert (hw.resolve("slow.example"), hw.resolve("other.example")) == (4000.0, 5.0)
    with pytest.raises(FileNotFoundError):
        hw.system()
    for kind in ("camera_capture_failed", "mic_capture_failed", "icmp_not_permitted",
                 "probe_error"):
        hw.clear(kind)
    assert hw.sample_picture(camera, criteria(Thresholds())).frames > 0
    assert hw.ping("127.0.0.1").received > 0 and hw.system().disk_pct < 90

def test_watch_hears_unplug_and_replug_at_once(clock: ManualClock) -> None:
    hw = SimulatedHardware(clock=clock)
    events: list[dict[str, Any]] = []
    stop = hw.watch(events.append)
    try:
        hw.apply(Fault("camera_unplugged", device=TEACHER))
        hw.apply(Fault("display_disconnected"))
        hw.clear("camera_unplugged", TEACHER)
    finally:
        stop()
        stop()  # stopping twice is harmless
    assert [(e["type"], e["entity"]) for e in events] == [
        ("device_removed", f"camera:{TEACHER}"),
        ("device_removed", "display:card0-HDMI-A-1"),
        ("device_added", f"camera:{TEACHER}"),
    ]
    assert events[0]["message_zh"].startswith("摄像头已断开")
    assert events[0]["detail"]["name"] == "Teacher camera"
    hw.apply(Fault("mic_unplugged"))
    assert len(events) == 3  # no longer watching


def test_timed_fault_reaches_watchers_through_poll(clock: ManualClock) -> None:
    hw = open_backend("simulated", scenario=DEMO, clock=clock)
    assert isinstance(hw, SimulatedHardware)
    assert hw.poll() == []
    clock.advance(30)
    assert [e["type"] for e in hw.poll()] == ["device_removed"]
    assert hw.poll() == []  # reported once


def test_bad_scenarios_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[fault]]\nat = 5\nkind = "camera_exploded"\n')
    with pytest.raises(ConfigError, match="camera_exploded") as err:
        load_scenario(bad)
    assert "fault[0]" in err.value.key
    bad.write_text('[[fault]]\nkind = "packet_loss"\n')
    with pytest.raises(ConfigError, match="needs a value"):
        load_scenario(bad)
    bad.write_text('[[camera]]\nid = "c"\ncolour = "red"\n')
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    assert err.value.key.endswith("camera[0].colour")
    with pytest.raises(ConfigError):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="unknown hardware backend"):
        open_backend("windows")


def test_watch_thread_notices_a_timed_fault(clock: ManualClock) -> None:
    hw = SimulatedHardware(load_scenario(DEMO), clock=clock, poll_s=0.01)
    heard = threading.Event()
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        heard.set()

    stop = hw.watch(on_event)
    try:
        clock.advance(30)  # nobody calls poll(): the watcher's own thread must notice
        assert heard.wait(5)
    finally:
        stop()
    assert [(e["type"], e["entity"]) for e in events] == [("device_removed", f"camera:{TEACHER}")]
