"""A network camera's stream, really asked for: ffprobe with a timeout, then one frame.

A configured RTSP camera used to count as present because it was in the config.  Here
ffprobe opens the stream (RTSP over TCP, the socket timeout in the spelling of the
FFmpeg release found at start), names its video codec and size, and then ffmpeg decodes
one frame: a camera whose RTSP server answers but whose encoder is stuck sends no frame.
Errors carry a netcause word, so advice is about the network (power, address, account,
path), never "re-plug".  Messages go through agent.redact: the URL's password stays here.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence

from agent.hardware.base import HardwareError, StreamInfo
from agent.hardware.ffmpeg_compat import spelling
from agent.hardware.media import FRAMES, camera_input, ffmpeg_error
from agent.hardware.netcause import ffmpeg_cause, refine
from agent.redact import redact

__all__ = ["frame_command", "probe_command", "probe_stream"]

# ffprobe and ffmpeg get this much longer than their own socket timeout before the
# subprocess is killed: opening is several round trips (OPTIONS, DESCRIBE, SETUP, PLAY).
_GRACE_S = 2.0


def _input(url: str, version: tuple[int, int], timeout_s: float) -> list[str]:
    timeout = [*spelling("rtsp_socket_timeout", version), str(int(timeout_s * 1_000_000))] \
        if url.startswith("rtsp://") else []
    return [*timeout, *camera_input(url)]


def probe_command(url: str, version: tuple[int, int], timeout_s: float,
                  ffprobe: str = "ffprobe") -> list[str]:
    """ffprobe's command line: the first video stream's codec and size, as JSON."""
    return [ffprobe, "-hide_banner", "-v", "error", *_input(url, version, timeout_s),
            "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height",
            "-of", "json"]


def frame_command(url: str, version: tuple[int, int], timeout_s: float,
                  ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg's command line that decodes one video frame and counts it on stderr."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
            *_input(url, version, timeout_s), "-map", "0:v:0", "-frames:v", "1",
            "-progress", "pipe:2", "-f", "null", "-"]


def _run(cmd: Sequence[str], timeout_s: float, what: str, url: str) -> tuple[int, bytes, bytes]:
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s + _GRACE_S,
                             check=False)
    except FileNotFoundError:
        raise HardwareError("ffmpeg_missing", f"{cmd[0]} not installed (ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise HardwareError("stream_timeout", f"{redact(url)}: no {what} within "
                            f"{timeout_s + _GRACE_S:g} s", refine("timeout")) from None
    return out.returncode, out.stdout, out.stderr


def _failed(reason: str, url: str, stderr: bytes) -> HardwareError:
    """ffmpeg's first error line (not a -progress key=value), naming the URL once."""
    first = ffmpeg_error(stderr)
    cause = ffmpeg_cause(stderr.decode(errors="replace"))
    return HardwareError(reason, redact(first if url in first else f"{url}: {first}"),
                         refine(cause) if cause else "")


def probe_stream(url: str, version: tuple[int, int], timeout_s: float = 5.0, *,
                 ffprobe: str = "ffprobe", ffmpeg: str = "ffmpeg") -> StreamInfo:
    """Open ``url`` with ffprobe, then decode one frame; raise HardwareError with a
    netcause word when either fails (``stream_unreachable``, ``stream_no_video``,
    ``stream_no_frame``, ``stream_timeout``)."""
    started = time.perf_counter()
    code, stdout, stderr = _run(probe_command(url, version, timeout_s, ffprobe), timeout_s,
                                "answer", url)
    if code != 0:
        raise _failed("stream_unreachable", url, stderr)
    opened_ms = (time.perf_counter() - started) * 1000
    try:
        streams = json.loads(stdout or b"{}").get("streams") or []
    except ValueError:
        streams = []
    if not streams:
        raise HardwareError("stream_no_video", f"{redact(url)}: no video stream")
    video = streams[0]
    started = time.perf_counter()
    code, _, stderr = _run(frame_command(url, version, timeout_s, ffmpeg), timeout_s,
                           "frame", url)
    counted = FRAMES.findall(stderr)
    if code != 0 or not counted or int(counted[-1]) < 1:
        raise _failed("stream_no_frame", url, stderr)
    return StreamInfo(codec=str(video.get("codec_name", "")),
                      width=_int(video.get("width")), height=_int(video.get("height")),
                      open_ms=round(opened_ms, 1),
                      frame_ms=round((time.perf_counter() - started) * 1000, 1))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
