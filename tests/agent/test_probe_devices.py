"""Camera, microphone, speaker and display probes on real media and on the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.contract import CheckVerdict
from agent.hardware import open_backend
from agent.hardware.base import Hardware, HardwareError
from agent.hardware.scenario import Fault, Scenario, SimAudio, default_scenario
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams, ProbeContext, ProbeReport
from agent.probes.camera import CameraProbe
from agent.probes.devices import PresenceProbe
from agent.probes.display import DisplayProbe
from agent.probes.microphone import MicrophoneProbe
from agent.probes.speaker import SpeakerProbe
from agent.thresholds import Thresholds
from tests.agent.fixtures.media import alsa_feeds

__all__ = ["alsa_feeds"]  # fixture used here

FIXTURES = Path(__file__).parent / "fixtures"


def ctx(hw: Hardware, **thresholds: int) -> ProbeContext:
    return ProbeContext(hw, Thresholds(**thresholds), {})


def reasons(report: ProbeReport) -> dict[str, str]:
    return {f.entity: f.reason for f in report.findings}


def test_camera_check_on_real_frames() -> None:
    hw = open_backend("linux", sysfs_root=FIXTURES / "sysfs-classroom", extra_cameras={
        "moving": "lavfi:testsrc=size=320x240:rate=25",
        "black": "lavfi:color=black:size=320x240",
        "frozen": "lavfi:color=gray:size=320x240",  # a constant picture: identical frames
        # a still room through a real sensor: the same picture, but noisy
        "still": "lavfi:smptehdbars=size=1280x720:rate=30,noise=alls=3:allf=t",
        "broken": "/dev/video99",
    })
    report = CameraProbe().check(ctx(hw), CheckParams())
    assert reasons(report) == {
        "camera:black": "camera_black",
        "camera:frozen": "camera_frozen",
        "camera:broken": "camera_capture_failed",
    }
    assert report.verdict is CheckVerdict.FAIL
    devices = {d["id"]: d for d in report.section["devices"]}
    for live in ("moving", "still"):
        assert devices[live]["ok"] is True
        assert (devices[live]["frames"], devices[live]["black_frames"]) == (40, 0)
        assert devices[live]["frozen_s"] is None
    assert devices["frozen"]["frozen_s"] >= 0.5 and "画面冻结" in devices["frozen"]["message"]
    assert devices["black"]["reason"] == "camera_black"
    assert "镜头盖" in devices["black"]["message"]
    assert report.section["ok"] is False and report.section["count"] == 5


def test_microphone_check_on_real_alsa_capture(alsa_feeds: Path) -> None:
    hw = open_backend("linux", extra_microphones={"sine": "sine", "zero": "zero",
                                                  "square": "square", "gone": "no_such_pcm"})
    report = MicrophoneProbe(seconds=0.5).check(ctx(hw), CheckParams())
    assert reasons(report) == {
        "microphone:zero": "microphone_silent",
        "microphone:square": "microphone_clipping",
        "microphone:gone": "microphone_capture_failed",
    }
    devices = {d["id"]: d for d in report.section["devices"]}
    assert devices["sine"]["level_dbfs"] == pytest.approx(-21, abs=0.5)
    assert devices["sine"]["ok"] is True
    assert devices["zero"]["silent"] is True and devices["zero"]["level_dbfs"] is None


def test_quiet_microphone_is_a_warning() -> None:
    scenario = Scenario(microphone=[SimAudio("mic0", "Mic", level_dbfs=-70)])
    report = MicrophoneProbe(seconds=0.2).check(ctx(SimulatedHardware(scenario)), CheckParams())
    assert reasons(report) == {"microphone:mic0": "microphone_quiet"}
    assert report.verdict is CheckVerdict.WARN and report.section["ok"] is True


def test_unplugged_camera_stays_listed_until_it_is_back() -> None:
    hw = SimulatedHardware()
    probe = CameraProbe()
    teacher = hw.cameras()[0]
    assert probe.collect(ctx(hw)).section["ok"] is True
    hw.apply(Fault("camera_unplugged", device=teacher.id))
    section = probe.collect(ctx(hw)).section
    gone = [d for d in section["devices"] if not d["present"]]
    assert [(d["id"], d["ok"], d["reason"]) for d in gone] == [(teacher.id, False,
                                                                "camera_missing")]
    assert section["ok"] is False and section["count"] == 1
    assert "摄像头未连接" in section["message"]
    hw.clear("camera_unplugged")
    assert probe.collect(ctx(hw)).section["ok"] is True


def test_too_few_devices_fail_even_if_never_seen() -> None:
    report = CameraProbe().collect(ctx(SimulatedHardware(), min_cameras=3))
    [finding] = report.findings
    assert (finding.reason, finding.value, finding.threshold) == ("camera_missing", 2, 3)
    assert finding.message_zh.startswith("应有 3 个，只有 2 个")
    empty = Scenario(camera=[], speaker=[])
    assert reasons(SpeakerProbe().collect(ctx(SimulatedHardware(empty)))) == {
        "speaker:*": "speaker_missing"}


def test_displays_from_sysfs_trees() -> None:
    classroom = open_backend("linux", sysfs_root=FIXTURES / "sysfs-classroom")
    report = DisplayProbe().collect(ctx(classroom))
    # The spare DisplayPort was never connected: not a problem.
    assert report.findings == [] and report.section["count"] == 1
    assert report.section["devices"][0]["name"] == "EPSON PJ"
    unplugged = open_backend("linux", sysfs_root=FIXTURES / "sysfs-unplugged")
    assert reasons(DisplayProbe().collect(ctx(unplugged))) == {"display:*":
                                                                "display_disconnected"}


def test_projector_unplugged_during_the_day() -> None:
    hw = SimulatedHardware(default_scenario())
    probe = DisplayProbe()
    probe.collect(ctx(hw))
    hw.apply(Fault("display_disconnected"))
    report = probe.check(ctx(hw), CheckParams())
    assert reasons(report) == {"display:card0-HDMI-A-1": "display_disconnected"}
    assert "投影仪" in report.findings[0].message_zh


@pytest.mark.parametrize(("probe", "role"), [(CameraProbe(), "camera"),
                                             (MicrophoneProbe(), "microphone")])
def test_a_busy_device_is_a_warning_a_broken_one_a_failure(probe: PresenceProbe[Any],
                                                            role: str) -> None:
    entity = f"{role}:x"
    extra, (busy,) = probe.unusable(HardwareError(f"{role}_busy", "in use"), "Podium", entity)
    assert extra == {"busy": True}
    assert (busy.level, busy.reason, busy.entity) == (CheckVerdict.WARN, f"{role}_busy", entity)
    assert busy.message_zh.startswith("Podium：") and "in use by" in busy.message_en
    extra, (broken,) = probe.unusable(HardwareError("io", "ffmpeg exited 1"), "Podium", entity)
    assert (extra, broken.level, broken.reason) == ({}, CheckVerdict.FAIL,
                                                    f"{role}_capture_failed")
    assert broken.message_en.endswith(": ffmpeg exited 1") and "重新插拔" in broken.message_zh
    _, (empty,) = probe.unusable("no sound recorded", "Podium", entity)
    assert empty.message_en.endswith(": no sound recorded")
