"""Sampling between checks, and never near a lesson or on a held device (agent.quiet)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from agent.commands import CommandError, check_params, lesson_window, parse_args
from agent.compat import UTC
from agent.contract import format_ts
from agent.hardware.base import AudioClip, AudioDevice
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes.bandwidth import BandwidthProbe
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.camera import CameraProbe
from agent.probes.microphone import MicrophoneProbe
from agent.quiet import QuietWindows
from agent.thresholds import Thresholds
from tests.clock import ManualClock

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
LESSON = START + timedelta(hours=1)
# The default simulated classroom's devices.
MIC, CAM0, CAM1 = "usb-0000:00:14.0-3", "usb-0000:00:14.0-1", "usb-0000:00:14.0-2"


def _setup(every_s: float = 120.0) -> tuple[ManualClock, SimulatedHardware, ProbeContext]:
    clock = ManualClock(START)
    hw = SimulatedHardware(clock=clock)
    quiet = QuietWindows(lead_s=900, hold_s=5400, clock=clock)
    return clock, hw, ProbeContext(hw, Thresholds(), {}, clock=clock, quiet=quiet,
                                   sample_every_s=every_s)


def _mic(probe: MicrophoneProbe, ctx: ProbeContext) -> dict[str, object]:
    [mic] = probe.collect(ctx).section["devices"]
    return mic


def test_a_microphone_gone_silent_is_found_by_the_next_sample_not_the_next_check() -> None:
    clock, hw, ctx = _setup()
    probe = MicrophoneProbe()
    first = _mic(probe, ctx)
    assert first["ok"] is True and first["sampled"] is True
    hw.apply(Fault("mic_silent", MIC))
    clock.advance(seconds=60)  # not due: the last sample stands
    assert _mic(probe, ctx)["ok"] is True and _mic(probe, ctx)["sampled"] is False
    clock.advance(seconds=60)
    silent = _mic(probe, ctx)
    assert (silent["ok"], silent["reason"], silent["sampled"]) == (False, "microphone_silent",
                                                                   True)
    clock.advance(seconds=30)  # between samples the fault stays in every telemetry
    assert _mic(probe, ctx)["reason"] == "microphone_silent"
    hw.clear("mic_silent", MIC)
    clock.advance(seconds=90)
    healed = _mic(probe, ctx)
    assert healed["ok"] is True and healed["last_good_at"] == format_ts(clock())


def test_no_periodic_sampling_when_switched_off() -> None:
    _, _, ctx = _setup(every_s=0)
    assert "sampled" not in _mic(MicrophoneProbe(), ctx)


def test_one_device_per_collection_the_longest_unsampled_first() -> None:
    clock, _, ctx = _setup()
    probe = CameraProbe()
    sampled = [[d["id"] for d in probe.collect(ctx).section["devices"] if d.get("sampled")]
               for _ in range(2)]
    assert sampled == [[CAM0], [CAM1]]
    assert [d["id"] for d in probe.collect(ctx).section["devices"] if d.get("sampled")] == []
    clock.advance(seconds=120)
    assert [d["id"] for d in probe.collect(ctx).section["devices"] if d.get("sampled")] == [
        CAM0]


def test_near_a_lesson_nothing_is_sampled_and_the_evidence_is_passive() -> None:
    clock, hw, ctx = _setup()
    assert ctx.quiet is not None
    probe, bandwidth = MicrophoneProbe(), BandwidthProbe()
    _mic(probe, ctx)  # a good sample at START
    ctx.quiet.lesson(LESSON, LESSON + timedelta(minutes=40))
    hw.apply(Fault("mic_silent", MIC))
    clock.set(LESSON - timedelta(minutes=16))  # before the quiet lead: sampled
    assert _mic(probe, ctx)["reason"] == "microphone_silent"
    hw.clear("mic_silent", MIC)
    for at in (LESSON - timedelta(minutes=14), LESSON + timedelta(minutes=39)):
        clock.set(at)
        report = probe.check(ctx, CheckParams())
        [mic] = report.section["devices"]
        # Not sampled: the last sample's fault stands, with its time.
        assert mic["sampled"] is False and mic["reason"] == "microphone_silent"
        assert mic["sampled_at"] == format_ts(LESSON - timedelta(minutes=16))
        assert mic["last_good_at"] == format_ts(START)
        assert bandwidth.check(ctx, CheckParams(bandwidth_url="http://x/")).section[
            "sampled"] is False
    clock.set(LESSON + timedelta(minutes=40))  # the lesson is over
    assert _mic(probe, ctx)["ok"] is True


def test_a_passive_check_samples_nothing() -> None:
    _, hw, ctx = _setup(every_s=0)
    hw.apply(Fault("camera_black", CAM0))
    report = CameraProbe().check(ctx, CheckParams(passive=True))
    camera = report.section["devices"][0]
    assert report.findings == [] and camera["sampled"] is False and "frames" not in camera
    report = CameraProbe().check(ctx, CheckParams())
    assert [f.reason for f in report.findings] == ["camera_black"]


def test_a_device_the_lessons_app_holds_is_in_use_not_sampled() -> None:
    _, hw, ctx = _setup()
    hw.apply(Fault("device_in_use", CAM0))
    hw.apply(Fault("camera_black", CAM0))
    camera = CameraProbe().collect(ctx).section["devices"][0]
    assert camera["id"] == CAM0 and camera["ok"] is True and camera["sampled"] is False
    assert camera["held_by"] == [{"pid": 4242, "app": "classroom-app", "user": "teacher"}]
    assert camera["message"].endswith("in use by classroom-app (teacher)")


def test_a_check_naming_only_its_lesson_holds_quiet_from_then() -> None:
    clock, _, ctx = _setup()
    assert ctx.quiet is not None and ctx.may_disturb()
    ctx.quiet.lesson()
    assert not ctx.may_disturb()
    clock.advance(seconds=5399)
    assert not ctx.may_disturb()
    clock.advance(seconds=1)
    assert ctx.may_disturb()


def test_run_check_window_args() -> None:
    starts, ends = format_ts(LESSON), format_ts(LESSON + timedelta(minutes=40))
    args = parse_args("run-check", {"lesson_id": 7, "lesson_starts_at": starts,
                                    "lesson_ends_at": ends, "passive": True})
    assert lesson_window(args) == (LESSON, LESSON + timedelta(minutes=40))
    assert check_params(args).passive is True
    assert check_params({}).passive is False and lesson_window({}) is None
    for bad in ({"lesson_starts_at": starts}, {"lesson_starts_at": ends, "lesson_ends_at": starts},
                {"lesson_starts_at": "08:00", "lesson_ends_at": ends}, {"passive": "yes"}):
        with pytest.raises(CommandError) as err:
            parse_args("run-check", bad)
        assert err.value.reason.value == "bad-args"


class _SlowMicrophone(SimulatedHardware):
    """Records only when told: a check's recording is under way while a collection runs."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.recording, self.finish = threading.Event(), threading.Event()

    def record(self, microphone: AudioDevice, seconds: float = 1.0) -> AudioClip:
        self.recording.set()
        assert self.finish.wait(10)
        return super().record(microphone, seconds)


def test_a_collection_does_not_sample_while_a_check_does() -> None:
    clock = ManualClock(START)
    hw = _SlowMicrophone(clock)
    ctx = ProbeContext(hw, Thresholds(), {}, clock=clock, sample_every_s=120)
    probe = MicrophoneProbe()
    check = threading.Thread(target=probe.check, args=(ctx, CheckParams()))
    check.start()
    assert hw.recording.wait(10)
    [mic] = probe.collect(ctx).section["devices"]  # due, but the check is recording
    assert mic["sampled"] is False
    hw.finish.set()
    check.join(10)
    assert _mic(probe, ctx)["sampled_at"] == format_ts(START)  # the check's sample
