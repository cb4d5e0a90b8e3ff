"""Pictures through ffmpeg and sound through arecord, as small subprocesses.

The agent stays light: no OpenCV or numpy, just ffmpeg scaling a camera's picture down to
a small grayscale frame and arecord writing raw 16-bit samples to a pipe.  Both take the
input as a parameter, so tests feed them ffmpeg's lavfi sources and an ALSA ``file`` PCM.
"""

from __future__ import annotations

import subprocess
import sys
from array import array
from collections.abc import Sequence

from agent.hardware.base import AudioClip, Frame, HardwareError
from agent.hardware.netcause import ffmpeg_cause, refine

__all__ = ["camera_input", "capture_frames", "record_pcm"]


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


def _busy(stderr: bytes) -> bool:
    # EBUSY: the classroom's own streaming software holds the device, which is fine.
    return b"resource busy" in stderr.lower()


def capture_frames(
    input_args: Sequence[str],
    count: int = 2,
    *,
    width: int = 160,
    height: int = 90,
    skip: int = 10,
    spacing: int = 5,
    timeout_s: float = 15.0,
    ffmpeg: str = "ffmpeg",
) -> list[Frame]:
    """``count`` gray frames, ``spacing`` frames apart, after ``skip`` warm-up frames.

    Cameras send dark frames while auto-exposure settles, hence the skip.
    """
    select = f"select='gte(n\\,{skip})*not(mod(n-{skip}\\,{spacing}))'"
    cmd = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *input_args,
        "-vf", f"{select},scale={width}:{height},format=gray",
        "-fps_mode", "passthrough", "-frames:v", str(count), "-f", "rawvideo", "-",
    ]
    # A network camera's failure has a network cause (its account, its path, the route).
    network = any("://" in arg for arg in input_args)
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise HardwareError("ffmpeg_missing", f"{ffmpeg} not installed") from None
    except subprocess.TimeoutExpired:
        raise HardwareError("camera_timeout", f"no picture within {timeout_s:g} s",
                            refine("timeout") if network else "") from None
    size = width * height
    if out.returncode != 0 or len(out.stdout) < size * count:
        cause = ffmpeg_cause(out.stderr.decode(errors="replace")) if network else None
        raise HardwareError(
            "camera_busy" if _busy(out.stderr) else "camera_capture_failed",
            f"got {len(out.stdout) // size} of {count} frames: {_tail(out.stderr)}",
            refine(cause) if cause else "",
        )
    data = out.stdout
    return [Frame(width, height, data[i * size : (i + 1) * size]) for i in range(count)]


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
    data = array("h")
    data.frombytes(out.stdout[: len(out.stdout) // 2 * 2])
    if sys.byteorder == "big":
        data.byteswap()
    return AudioClip(rate, data)
