"""Pictures through ffmpeg and sound through arecord or parec, as small subprocesses.

The agent stays light: no OpenCV or numpy.  ffmpeg judges a camera's picture itself with
its blackdetect and freezedetect filters, and arecord writes raw 16-bit samples to a
pipe.  Both take the input as a parameter, so tests feed them ffmpeg's lavfi sources and
an ALSA ``file`` PCM.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from array import array
from collections.abc import Sequence

from agent.hardware.base import AudioClip, HardwareError, PictureCriteria, PictureSample
from agent.hardware.ffmpeg_compat import MINIMUM, spelling
from agent.hardware.netcause import ffmpeg_cause, refine

__all__ = [
    "FRAMES",
    "camera_input",
    "ffmpeg_error",
    "picture_command",
    "read_picture",
    "record_pcm",
    "record_pulse",
    "sample_picture",
]


def camera_input(node: str) -> list[str]:
    """ffmpeg input arguments for a camera: a V4L2 node, a network camera URL (many
    classrooms have RTSP cameras), or ``lavfi:<graph>`` (a synthetic source)."""
    if node.startswith("lavfi:"):
        return ["-f", "lavfi", "-i", node.removeprefix("lavfi:")]
    if node.startswith("rtsp://"):
        return ["-rtsp_transport", "tcp", "-i", node]
    if "://" in node:
        return ["-i", node]
    return ["-f", "v4l2", "-i", node]


def _tail(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def ffmpeg_error(stderr: bytes) -> str:
    """ffmpeg's first error: the layer that failed says why and names the device or host
    ("Cannot open video device /dev/video9: …"); FFmpeg 7 ends with a summary that names
    neither.  -progress writes key=value lines to the same stderr."""
    for line in stderr.decode(errors="replace").splitlines():
        if line.strip() and not _PROGRESS.match(line):
            return _LAYER.sub("", line.strip())
    return "no output"


def _busy(stderr: bytes) -> bool:
    # EBUSY: the classroom's own streaming software holds the device, which is fine.
    return b"resource busy" in stderr.lower()


_PROGRESS = re.compile(r"^\w+=\S*$")
_LAYER = re.compile(r"^\[[^]@]+ @ 0x[0-9a-f]+\] ")
FRAMES = re.compile(rb"^frame=(\d+)$", re.MULTILINE)
_MARK = re.compile(r"^frame:(\d+)\s+pts:\S+\s+pts_time:(\S+)")


def picture_command(
    input_args: Sequence[str],
    criteria: PictureCriteria,
    version: tuple[int, int],
    *,
    frames: int = 40,
    skip: int = 10,
    width: int = 640,
    height: int = 360,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """The ffmpeg command line that judges ``frames`` frames after ``skip`` warm-up ones.

    Cameras send dark frames while auto-exposure settles, hence the skip.  The picture is
    point-sampled (``flags=neighbor``) down to ``width``x``height``: each kept pixel keeps
    its own sensor noise, where an averaging scaler would smooth the noise away and make a
    still room look frozen.  blackdetect and freezedetect put their findings into frame
    metadata, which the metadata filter prints to stdout; -progress counts the frames.
    """
    graph = ",".join([
        f"select='gte(n\\,{skip})'",
        f"scale={width}:{height}:flags=neighbor",
        "format=gray",
        f"blackdetect=d=0:pix_th={criteria.black_pixel_luma:g}:pic_th={criteria.black_ratio:g}",
        f"freezedetect=n={criteria.frozen_noise:g}:d={criteria.frozen_min_s:g}",
        "metadata=mode=print:file=-",
    ])
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *input_args,
        "-vf", graph, *spelling("passthrough", version), "-frames:v", str(frames),
        "-progress", "pipe:2", "-f", "null", "-",
    ]


def read_picture(metadata: str, frames: int) -> PictureSample:
    """The sample as the metadata filter printed it: one ``frame:N pts:… pts_time:T``
    line, then that frame's ``key=value`` lines, for each frame that has any."""
    index, when = 0, 0.0
    black_from: int | None = None
    frozen_s: float | None = None
    for line in metadata.splitlines():
        if mark := _MARK.match(line):
            index, when = int(mark[1]), _seconds(mark[2])
            continue
        key, _, value = line.partition("=")
        if key == "lavfi.black_start":
            black_from = index
        elif key == "lavfi.black_end":
            black_from = None
        elif key == "lavfi.freezedetect.freeze_start":
            # freeze_start is the time of the first frozen frame; it comes on the frame
            # where the freeze had lasted frozen_min_s.
            frozen_s = round(when - _seconds(value), 3)
        elif key == "lavfi.freezedetect.freeze_end":
            frozen_s = None
    black = 0 if black_from is None else frames - black_from
    return PictureSample(frames, max(black, 0), frozen_s)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "NOPTS": a frame without a timestamp
        return 0.0


def sample_picture(
    input_args: Sequence[str],
    criteria: PictureCriteria,
    version: tuple[int, int],
    *,
    frames: int = 40,
    timeout_s: float = 15.0,
    ffmpeg: str = "ffmpeg",
) -> PictureSample:
    """Judge a camera's picture with ffmpeg's own blackdetect and freezedetect."""
    if version < MINIMUM:
        raise HardwareError("ffmpeg_too_old",
                            f"FFmpeg {version[0]}.{version[1]} is older than "
                            f"{MINIMUM[0]}.{MINIMUM[1]} (no freezedetect)")
    cmd = picture_command(input_args, criteria, version, frames=frames, ffmpeg=ffmpeg)
    # A network camera's failure has a network cause (its account, its path, the route).
    network = any("://" in arg for arg in input_args)
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise HardwareError("ffmpeg_missing", f"{ffmpeg} not installed") from None
    except subprocess.TimeoutExpired:
        raise HardwareError("camera_timeout", f"no picture within {timeout_s:g} s",
                            refine("timeout") if network else "") from None
    counted = FRAMES.findall(out.stderr)
    got = int(counted[-1]) if counted else 0
    if out.returncode != 0 or got < frames:
        cause = ffmpeg_cause(out.stderr.decode(errors="replace")) if network else None
        raise HardwareError(
            "camera_busy" if _busy(out.stderr) else "camera_capture_failed",
            f"got {got} of {frames} frames: {ffmpeg_error(out.stderr)}",
            refine(cause) if cause else "",
        )
    return read_picture(out.stdout.decode(errors="replace"), got)


def _clip(raw: bytes, rate: int) -> AudioClip:
    data = array("h")
    data.frombytes(raw[: len(raw) // 2 * 2])
    if sys.byteorder == "big":
        data.byteswap()
    return AudioClip(rate, data)


def record_pulse(
    source: str,
    server: str,
    seconds: float = 1.0,
    *,
    rate: int = 48000,
    timeout_s: float = 10.0,
    parec: str = "parec",
) -> AudioClip:
    """Record mono S16_LE from PulseAudio (or PipeWire's pipewire-pulse) source
    ``source`` ("" for the default) on ``server``: a shared stream beside the lesson's
    app, where ALSA's hw PCM would be busy.  parec records until stopped: it is stopped
    once it gave ``seconds`` of sound."""
    wanted = 2 * max(1, int(rate * seconds))
    cmd = [parec, "--raw", "--format=s16le", f"--rate={rate}", "--channels=1",
           "--latency-msec=100", *(["-d", source] if source else [])]
    env = {**os.environ, "PULSE_SERVER": server}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise HardwareError("parec_missing", f"{parec} not installed (pulseaudio-utils)") from None
    assert proc.stdout is not None
    timer = threading.Timer(timeout_s + seconds, proc.kill)
    timer.start()
    try:
        raw = b""
        while len(raw) < wanted and (chunk := proc.stdout.read(min(65536, wanted - len(raw)))):
            raw += chunk
    finally:
        timer.cancel()
        proc.kill()
        _, stderr = proc.communicate()
    if len(raw) < wanted:
        raise HardwareError("microphone_capture_failed",
                            f"{source or 'default source'} on {server}: {_tail(stderr)}")
    return _clip(raw, rate)


def record_pcm(
    pcm: str,
    seconds: float = 1.0,
    *,
    rate: int = 48000,
    timeout_s: float = 10.0,
    arecord: str = "arecord",
) -> AudioClip:
    """Record mono S16_LE from ALSA PCM ``pcm`` (``plughw:...`` converts as needed)."""
    samples = max(1, int(rate * seconds))
    cmd = [arecord, "-q", "-D", pcm, "-f", "S16_LE", "-r", str(rate), "-c", "1",
           "-t", "raw", "-s", str(samples), "-"]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s + seconds, check=False)
    except FileNotFoundError:
        raise HardwareError("arecord_missing", f"{arecord} not installed (alsa-utils)") from None
    except subprocess.TimeoutExpired:
        raise HardwareError("microphone_timeout", f"no sound within {timeout_s:g} s") from None
    if out.returncode != 0 or not out.stdout:
        reason = "microphone_busy" if _busy(out.stderr) else "microphone_capture_failed"
        raise HardwareError(reason, f"{pcm}: {_tail(out.stderr)}")
    return _clip(out.stdout, rate)
