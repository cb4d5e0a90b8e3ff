"""Frame capture through ffmpeg and recording through arecord, on real media."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.hardware.base import HardwareError
from agent.hardware.media import camera_input, capture_frames, record_pcm
from agent.probes.camera import analyse_frames
from agent.probes.microphone import analyse_audio
from agent.thresholds import Thresholds
from tests.agent.fixtures.media import alsa_feeds, ffmpeg_still

__all__ = ["alsa_feeds", "ffmpeg_still"]  # fixtures used here

TH = Thresholds()


def test_moving_picture_is_neither_black_nor_frozen() -> None:
    frames = capture_frames(camera_input("lavfi:testsrc=size=320x240:rate=25"))
    assert len(frames) == 2 and frames[0].width == 160 and frames[0].height == 90
    stats = analyse_frames(frames, TH.black_pixel_luma)
    assert not stats.black(TH.black_ratio)
    assert not stats.frozen(TH.frozen_diff)


def test_black_picture() -> None:
    stats = analyse_frames(capture_frames(camera_input("lavfi:color=black:size=320x240")),
                           TH.black_pixel_luma)
    assert stats.black(TH.black_ratio)
    assert stats.mean_luma < 0.05


def test_still_image_twice_is_frozen(ffmpeg_still: Path) -> None:
    frames = capture_frames(["-loop", "1", "-i", str(ffmpeg_still)])
    stats = analyse_frames(frames, TH.black_pixel_luma)
    assert frames[0].gray == frames[1].gray
    assert stats.frozen(TH.frozen_diff) and not stats.black(TH.black_ratio)


def test_camera_that_cannot_be_opened() -> None:
    with pytest.raises(HardwareError) as err:
        capture_frames(camera_input("/dev/video99"))
    assert err.value.reason == "camera_capture_failed"
    assert "video99" in err.value.message


def test_camera_input_kinds() -> None:
    assert camera_input("/dev/video0") == ["-f", "v4l2", "-i", "/dev/video0"]
    assert camera_input("rtsp://10.0.0.9/main")[:2] == ["-rtsp_transport", "tcp"]
    assert camera_input("lavfi:testsrc") == ["-f", "lavfi", "-i", "testsrc"]


def test_sine_comes_back_at_minus_21_dbfs(alsa_feeds: Path) -> None:
    clip = record_pcm("sine", 1.0)
    assert clip.rate == 48000 and len(clip.samples) == 48000
    stats = analyse_audio(clip)
    assert stats.rms_dbfs == pytest.approx(-21.0, abs=0.3)
    assert stats.peak_dbfs == pytest.approx(-18.1, abs=0.3)
    assert stats.clipped_fraction == 0 and not stats.silent


def test_digital_zero_is_silent(alsa_feeds: Path) -> None:
    stats = analyse_audio(record_pcm("zero", 0.5))
    assert stats.silent
    assert stats.to_json()["level_dbfs"] is None


def test_loud_square_clips(alsa_feeds: Path) -> None:
    stats = analyse_audio(record_pcm("square", 0.5))
    assert stats.clipped_fraction > 0.9
    assert stats.peak_dbfs == pytest.approx(0, abs=0.01)


def test_unknown_pcm_is_a_hardware_error(alsa_feeds: Path) -> None:
    with pytest.raises(HardwareError) as err:
        record_pcm("no_such_pcm", 0.2)
    assert err.value.reason == "microphone_capture_failed"
