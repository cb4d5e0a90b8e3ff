"""Frame capture through ffmpeg and recording through arecord, on real media."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.hardware.base import HardwareError, PictureSample
from agent.hardware.media import camera_input, record_pcm, sample_picture
from agent.probes.camera import criteria
from agent.probes.microphone import analyse_audio
from agent.thresholds import Thresholds
from tests.agent.fixtures.media import Build, alsa_feeds, ffmpeg_build, ffmpeg_still

__all__ = ["alsa_feeds", "ffmpeg_build", "ffmpeg_still"]  # fixtures used here

TH = Thresholds()
CRITERIA = criteria(TH)

# A still classroom seen by a real sensor: a static picture (SMPTE bars: flat areas,
# edges, dark and bright) plus temporal noise, from the faintest ffmpeg's noise filter
# makes (alls=1: a few pixels off by one level) to a plain dim-room noise (alls=3).
STILL_ROOM = "lavfi:smptehdbars=size=1280x720:rate=30,noise=alls={}:allf=t"


def sample(build: Build, node_or_args: str | list[str]) -> PictureSample:
    """The picture check as the agent runs it with ``build``: its own option spellings."""
    args = camera_input(node_or_args) if isinstance(node_or_args, str) else node_or_args
    return sample_picture(args, CRITERIA, build.version.release, ffmpeg=build.path)


def test_moving_picture_is_neither_black_nor_frozen(ffmpeg_build: Build) -> None:
    got = sample(ffmpeg_build, "lavfi:testsrc=size=1280x720:rate=30")
    assert got == PictureSample(frames=40, black_frames=0, frozen_s=None)
    assert not got.black and not got.frozen


@pytest.mark.parametrize("strength", [1, 3])
def test_still_room_with_sensor_noise_is_not_frozen(ffmpeg_build: Build, strength: int) -> None:
    got = sample(ffmpeg_build, STILL_ROOM.format(strength))
    assert got == PictureSample(frames=40, black_frames=0, frozen_s=None)


def _mjpeg(tmp_path: Path, source: str) -> list[str]:
    """``source`` as a USB webcam sends it: MJPEG (JPEG quality ~90)."""
    clip = tmp_path / "camera.mkv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", source, "-t", "2", "-c:v", "mjpeg", "-q:v", "3",
                    "-pix_fmt", "yuvj422p", str(clip)], check=True)
    return ["-i", str(clip)]


def test_still_room_through_mjpeg_is_not_frozen(ffmpeg_build: Build, tmp_path: Path) -> None:
    # JPEG quantisation flattens faint noise: at freezedetect's default -60 dB this
    # room measured as frozen, at the agent's -80 dB it is live.
    got = sample(ffmpeg_build, _mjpeg(tmp_path, STILL_ROOM.format(2).removeprefix("lavfi:")))
    assert got == PictureSample(frames=40, black_frames=0, frozen_s=None)


def test_stuck_frame_through_mjpeg_is_frozen(ffmpeg_build: Build, tmp_path: Path) -> None:
    stuck = STILL_ROOM.format(2).removeprefix("lavfi:") + ",trim=end_frame=1,loop=loop=-1:size=1"
    got = sample(ffmpeg_build, _mjpeg(tmp_path, stuck))
    assert got.frozen and not got.black


def test_driver_repeating_one_noisy_frame_is_frozen(ffmpeg_build: Build) -> None:
    # One frame of the noisy room, then the very same buffer again and again.
    stuck = STILL_ROOM.format(3) + ",trim=end_frame=1,loop=loop=-1:size=1:start=0"
    got = sample(ffmpeg_build, stuck)
    assert got.frozen and not got.black
    assert got.frozen_s is not None and got.frozen_s >= TH.frozen_min_s


def test_still_image_looped_is_frozen(ffmpeg_build: Build, ffmpeg_still: Path) -> None:
    got = sample(ffmpeg_build, ["-loop", "1", "-i", str(ffmpeg_still)])
    assert got.frozen and not got.black


def test_covered_lens_with_noise_is_black(ffmpeg_build: Build) -> None:
    got = sample(ffmpeg_build, "lavfi:color=black:size=1280x720:rate=30,noise=alls=4:allf=t")
    assert got == PictureSample(frames=40, black_frames=40, frozen_s=None)
    assert got.black


def test_picture_that_goes_dark_midway_is_not_black(ffmpeg_build: Build) -> None:
    # Black from t = 1.2 s: the last ~20 of the 40 frames (from t = 0.4 s at 25 fps).
    got = sample(ffmpeg_build, "lavfi:testsrc=size=320x240:rate=25,"
                 "drawbox=c=black:t=fill:enable='gte(t,1.2)'")
    assert 0 < got.black_frames < got.frames and not got.black


def test_camera_that_cannot_be_opened(ffmpeg_build: Build) -> None:
    with pytest.raises(HardwareError) as err:
        sample(ffmpeg_build, "/dev/video99")
    assert err.value.reason == "camera_capture_failed"
    assert "video99" in err.value.message and "of 40 frames" in err.value.message


def test_ffmpeg_older_than_4_2_is_named() -> None:
    with pytest.raises(HardwareError) as err:
        sample_picture(camera_input("lavfi:testsrc"), CRITERIA, (4, 1))
    assert err.value.reason == "ffmpeg_too_old" and "4.1" in err.value.message


def test_missing_ffmpeg() -> None:
    with pytest.raises(HardwareError) as err:
        sample_picture(camera_input("lavfi:testsrc"), CRITERIA, (7, 1),
                       ffmpeg="/nonexistent/ffmpeg")
    assert err.value.reason == "ffmpeg_missing"


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
