"""The hardware seam: everything a probe may ask of the classroom machine.

Probes never touch /dev, /sys, subprocesses or sockets themselves; they ask a
``Hardware``.  Two backends implement it: ``linux`` (pyudev, V4L2 through ffmpeg, ALSA
through arecord, psutil, sockets) and ``simulated`` (a scenario file with timed faults),
which the demo and the tests use where this machine has no devices.

Errors: a backend raises ``HardwareError(reason, message)`` when a device cannot be read
(gone, busy, capture failed).  ``reason`` is a stable machine code that ends up in the
telemetry section; anything else a backend raises is a bug the probe runner isolates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, ClassVar

from agent.hardware.holders import Holder

__all__ = [
    "AudioClip",
    "AudioDevice",
    "Display",
    "Hardware",
    "HardwareError",
    "HotplugCallback",
    "PictureCriteria",
    "PictureSample",
    "PingResult",
    "StopWatching",
    "StreamInfo",
    "SystemStats",
    "VideoDevice",
]


class HardwareError(Exception):
    """``reason``: what failed (the contract's reason); ``cause``: why, when known (a
    word of agent.hardware.netcause that the probes turn into advice)."""

    def __init__(self, reason: str, message: str, cause: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.cause = cause


@dataclass(frozen=True)
class VideoDevice:
    # USB vendor:product:serial, the same on any port (the port only without a serial)
    id: str
    name: str
    node: str = ""  # /dev/videoN
    vendor: str = ""
    model: str = ""
    serial: str = ""
    bus_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AudioDevice:
    id: str
    name: str
    pcm: str = ""  # the ALSA PCM name arecord/aplay open, e.g. "plughw:CARD=C920,DEV=0"
    vendor: str = ""
    model: str = ""
    serial: str = ""
    bus_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Display:
    id: str  # DRM connector, e.g. "card0-HDMI-A-1"
    connected: bool
    enabled: bool | None = None
    monitor: str = ""  # model name from the EDID, e.g. the projector's

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PictureCriteria:
    """What ffmpeg's blackdetect and freezedetect are told (see agent.thresholds)."""

    black_pixel_luma: float  # blackdetect pix_th
    black_ratio: float  # blackdetect pic_th
    frozen_noise: float  # freezedetect n
    frozen_min_s: float  # freezedetect d


@dataclass(frozen=True)
class PictureSample:
    """A camera's picture over a short sample, as blackdetect and freezedetect saw it."""

    frames: int  # analysed, after the warm-up
    black_frames: int  # the last frames of the sample that were black
    # The picture was still frozen at the end of the sample, after this many seconds
    # (freezedetect reports a freeze once it lasted frozen_min_s); None: it was not.
    frozen_s: float | None

    @property
    def black(self) -> bool:
        """Black from the first analysed frame to the last (a covered lens, a cap)."""
        return self.frames > 0 and self.black_frames >= self.frames

    @property
    def frozen(self) -> bool:
        return self.frozen_s is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AudioClip:
    """Signed 16-bit mono samples."""

    rate: int
    samples: array[int]

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


@dataclass(frozen=True)
class PingResult:
    """Round trips to one host: ``rtts_ms`` holds one entry per answered probe."""

    sent: int
    rtts_ms: tuple[float, ...] = ()
    method: str = "icmp"  # "icmp", "tcp" (connect time) or "simulated"
    error: str = ""  # why the last unanswered probe failed: a netcause word, e.g. "refused"

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0

    @property
    def rtt_ms(self) -> float | None:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None

    @property
    def jitter_ms(self) -> float | None:
        # Mean absolute difference of consecutive round trips: the inter-arrival jitter
        # idea of RFC 3550 without its smoothing, which needs far more samples than a probe.
        if len(self.rtts_ms) < 2:
            return None if not self.rtts_ms else 0.0
        diffs = [abs(b - a) for a, b in zip(self.rtts_ms, self.rtts_ms[1:], strict=False)]
        return sum(diffs) / len(diffs)


@dataclass(frozen=True)
class StreamInfo:
    """A network camera's stream as ffprobe and one decoded frame showed it."""

    codec: str
    width: int | None
    height: int | None
    open_ms: float  # ffprobe: connect, describe, first packets
    frame_ms: float  # ffmpeg: one frame decoded

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SystemStats:
    cpu_pct: float
    mem_pct: float
    disk_pct: float
    temp_c: float | None
    uptime_s: float
    boot_time: datetime
    clock_synced: bool | None  # None: cannot tell on this machine

    def __post_init__(self) -> None:
        for name in ("cpu_pct", "mem_pct", "disk_pct", "uptime_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} is not finite")


#: A hot-plug event: {type, entity, detail, message_zh, message_en} (contract "event").
HotplugCallback = Callable[[dict[str, Any]], None]
StopWatching = Callable[[], None]


class Hardware(ABC):
    """What the probes need from the machine; one instance per agent process."""

    kind: ClassVar[str]

    @abstractmethod
    def cameras(self) -> list[VideoDevice]: ...

    @abstractmethod
    def microphones(self) -> list[AudioDevice]: ...

    @abstractmethod
    def speakers(self) -> list[AudioDevice]: ...

    @abstractmethod
    def displays(self) -> list[Display]: ...

    @abstractmethod
    def sample_picture(self, camera: VideoDevice, criteria: PictureCriteria) -> PictureSample:
        """Some tenths of a second of ``camera``'s picture, after the camera settled."""

    @abstractmethod
    def record(self, microphone: AudioDevice, seconds: float = 1.0) -> AudioClip: ...

    def holders(self, device: VideoDevice | AudioDevice) -> list[Holder]:
        """The other processes that have ``device`` open now ([]: free, or cannot tell)."""
        return []

    @abstractmethod
    def ping(self, host: str, count: int = 5, timeout_s: float = 1.0) -> PingResult:
        """``host`` is a name or address, or ``host:port`` for TCP connect timing."""

    @abstractmethod
    def resolve(self, host: str) -> float:
        """Resolve ``host``; return the time it took in ms, or raise HardwareError."""

    @abstractmethod
    def download(self, url: str, nbytes: int, timeout_s: float) -> float:
        """GET ``url?bytes=N``; return the measured throughput in Mbit/s."""

    @abstractmethod
    def upload(self, url: str, nbytes: int, timeout_s: float) -> float:
        """POST ``nbytes`` to ``url``; return the measured throughput in Mbit/s."""

    def probe_stream(self, url: str, timeout_s: float = 5.0) -> StreamInfo:
        """Open a network camera's stream and decode one frame (HardwareError if not).

        Only a backend that can reach a network says more than that it cannot."""
        raise HardwareError("stream_unsupported",
                            f"the {self.kind} backend cannot open network streams")

    @abstractmethod
    def net_bytes(self) -> tuple[int, int]:
        """Bytes (sent, received) on all non-loopback interfaces since boot."""

    @abstractmethod
    def system(self) -> SystemStats: ...

    @abstractmethod
    def host(self) -> dict[str, Any]:
        """Static facts about the machine for the birth message (hostname, os, cpus...)."""

    @abstractmethod
    def watch(self, callback: HotplugCallback) -> StopWatching:
        """Call ``callback`` with an event when a device appears or disappears.

        Returns a function that stops watching; it is safe to call more than once.
        """

    def inventory(self) -> dict[str, Any]:
        """The ``inventory`` of the birth message."""
        return {
            "cameras": [d.to_json() for d in self.cameras()],
            "microphones": [d.to_json() for d in self.microphones()],
            "speakers": [d.to_json() for d in self.speakers()],
            "displays": [d.to_json() for d in self.displays()],
            "host": self.host(),
        }
