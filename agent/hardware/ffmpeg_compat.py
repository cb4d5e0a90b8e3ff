"""Which FFmpeg the classroom PC has, and how that FFmpeg spells what the agent asks.

Classroom PCs run their distribution's FFmpeg: 4.2 (Ubuntu 20.04), 4.4 (Ubuntu 22.04),
5.1 (Debian 12), 6.1 (Ubuntu 24.04), 7.x (Debian 13, newer Ubuntus).  The version is read
once from ``ffmpeg -version`` and every command line takes its spellings from ``TABLE``,
the one place that says which option each version range needs.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass

__all__ = [
    "MINIMUM",
    "NEWEST",
    "TABLE",
    "FFmpegVersion",
    "Spelling",
    "detect",
    "parse_version",
    "spelling",
]

#: freezedetect, the newest filter the picture check uses, came with FFmpeg 4.2 "Ada"
#: (Changelog, version 4.2); every other option and filter the agent uses is older.
MINIMUM = (4, 2)
#: What a build that names no release (a git snapshot: "N-112345-g…", "2024-05-01-git-…")
#: is taken for: such builds are newer than the last release.
NEWEST = (99, 0)


@dataclass(frozen=True)
class FFmpegVersion:
    major: int
    minor: int
    text: str  # as ``ffmpeg -version`` printed it, for logs and the note in telemetry

    @property
    def release(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def supported(self) -> bool:
        return self.release >= MINIMUM


@dataclass(frozen=True)
class Spelling:
    since: tuple[int, int]  # first release that takes it
    args: tuple[str, ...]
    source: str  # where that is documented


#: capability -> its spellings, oldest first; a version uses the newest one it has.
TABLE: dict[str, tuple[Spelling, ...]] = {
    # Pass frames through with their own timestamps: no duplicated or dropped frames, so
    # freezedetect sees what the camera sent and "-frames:v N" counts camera frames.
    "passthrough": (
        # ffmpeg.texi (all releases up to 8.x): "-vsync parameter ... 0, passthrough".
        # Deprecated by 5.1, kept behind FFMPEG_OPT_VSYNC in 7.x; do not use it there.
        Spelling((4, 2), ("-vsync", "passthrough"), "ffmpeg(1) -vsync, FFmpeg 4.2-5.0"),
        # Added by commit 09c53a04 "ffmpeg: add option fps_mode" (June 2022), first
        # released in 5.1, which also deprecated -vsync.
        Spelling((5, 1), ("-fps_mode", "passthrough"), "ffmpeg(1) -fps_mode, FFmpeg 5.1+"),
    ),
    # How long an RTSP client waits on its socket, in microseconds; the value follows the
    # option.  Without it a camera that accepts the connection and never answers holds
    # ffprobe forever.
    "rtsp_socket_timeout": (
        # 4.x: "-stimeout: set timeout (in microseconds) of socket TCP I/O operations"
        # (`ffmpeg -h demuxer=rtsp` of 4.2.2).  There "-timeout" is the *listen* timeout in
        # seconds and implies rtsp_flags=listen: ffprobe would wait for the camera to
        # connect to it (4.2.2 already marks it "deprecated, use listen_timeout").
        Spelling((4, 2), ("-stimeout",), "ffmpeg-protocols(1) rtsp stimeout, FFmpeg 4.x"),
        # 5.0 dropped the deprecated RTSP options at the libavformat 59 bump: "-timeout"
        # became the socket I/O timeout in microseconds and "-stimeout" went away
        # (`-h demuxer=rtsp` of 5.1.x and 7.0.2 list only timeout and listen_timeout).
        Spelling((5, 0), ("-timeout",), "ffmpeg-protocols(1) rtsp timeout, FFmpeg 5.0+"),
    ),
}


def spelling(capability: str, version: tuple[int, int]) -> tuple[str, ...]:
    """The arguments ``version`` needs for ``capability`` (KeyError: not in the table)."""
    usable = [s for s in TABLE[capability] if s.since <= version]
    if not usable:
        raise ValueError(f"FFmpeg {version[0]}.{version[1]} cannot do {capability}")
    return usable[-1].args


_RELEASE = re.compile(r"ffmpeg version n?(\d+)\.(\d+)")
_SNAPSHOT = re.compile(r"ffmpeg version (N-|\d{4}-\d{2}-\d{2}-git|git-)")


def parse_version(output: str) -> FFmpegVersion | None:
    """The version in ``ffmpeg -version`` output: Debian/Ubuntu ("4.4.2-0ubuntu0.22.04.1"),
    tagged builds ("n7.1"), a major-only release ("7.0" prints "7.0"), git snapshots."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    if match := _RELEASE.match(first):
        return FFmpegVersion(int(match[1]), int(match[2]), first)
    if _SNAPSHOT.match(first):
        return FFmpegVersion(*NEWEST, first)
    return None


@functools.lru_cache(maxsize=8)
def detect(ffmpeg: str = "ffmpeg") -> FFmpegVersion | None:
    """``ffmpeg``'s version, asked once per binary (None: not installed or unreadable)."""
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True,
                             timeout=10, check=False)
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired):
        return None
    # -hide_banner does not hide -version's own first line, which is the one needed.
    return parse_version(out.stdout.decode(errors="replace"))
