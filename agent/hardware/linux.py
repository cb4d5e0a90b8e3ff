"""The real classroom PC: pyudev, V4L2 through ffmpeg, ALSA through arecord, psutil."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import psutil
import pyudev

from agent.hardware import ffmpeg_compat, holders, media, netio, stream, sysinfo, udev
from agent.hardware.base import (
    AudioClip,
    AudioDevice,
    Display,
    Hardware,
    HardwareError,
    HotplugCallback,
    PictureCriteria,
    PictureSample,
    PingResult,
    StopWatching,
    StreamInfo,
    SystemStats,
    VideoDevice,
)
from agent.hardware.events import DeviceTracker, poll_every
from agent.hardware.holders import Holder

__all__ = ["PULSE_PREFIX", "LinuxHardware", "pulse_server"]

#: A microphone spec naming a PulseAudio/PipeWire source: "pulse:" + the source's name
#: (``pactl list short sources``), or "pulse:" alone for the session's default source.
PULSE_PREFIX = "pulse:"


def pulse_server(configured: str, run_user: Path = Path("/run/user")) -> str:
    """The sound server to record from: the configured one, else $PULSE_SERVER, else the
    logged-in user's session socket (pipewire-pulse and PulseAudio both serve it)."""
    if configured:
        return configured
    if found := os.environ.get("PULSE_SERVER"):
        return found
    sockets = sorted(run_user.glob("*/pulse/native"))
    if not sockets:
        raise HardwareError("sound_server_missing",
                            f"no PulseAudio/PipeWire session socket under {run_user}")
    return f"unix:{sockets[0]}"

log = logging.getLogger(__name__)


class LinuxHardware(Hardware):
    kind: ClassVar[str] = "linux"

    def __init__(
        self,
        *,
        sysfs_root: Path = Path("/sys"),
        disk_path: str = "/",
        extra_cameras: Mapping[str, str] = MappingProxyType({}),
        extra_microphones: Mapping[str, str] = MappingProxyType({}),
        onboard_audio: Collection[str] = (),
        poll_s: float = 5.0,
        proc_root: Path = Path("/proc"),
        asound_root: Path = Path("/proc/asound"),
        snd_root: Path = Path("/dev/snd"),
        pulse_server: str = "",
    ) -> None:
        self.sysfs_root = sysfs_root
        self.poll_s = poll_s  # hot-plug polling when no udev monitor can run
        self.disk_path = disk_path
        # Who holds a device: processes from proc_root, PCM names to nodes through
        # asound_root's card links and snd_root's nodes.
        self.proc_root, self.asound_root, self.snd_root = proc_root, asound_root, snd_root
        # Microphones "pulse:<source>" record through this PulseAudio/pipewire-pulse server.
        self.pulse_server = pulse_server
        # Devices udev cannot see, id -> spec: network cameras (an RTSP URL) and ALSA
        # PCMs such as PipeWire's "default" or an asoundrc plug.
        self.extra_cameras = [VideoDevice(i, i, node=spec) for i, spec in extra_cameras.items()]
        self.extra_microphones = [AudioDevice(i, i, pcm=pcm)
                                  for i, pcm in extra_microphones.items()]
        # Onboard PCMs (HDA codec, HDMI/DP) that count as devices, as ``card:device``.
        self.onboard_audio = frozenset(onboard_audio)
        self._context = pyudev.Context()
        self._tracker: DeviceTracker | None = None
        self._tracker_lock = threading.Lock()
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; prime it
        # Once, at start: every camera command line takes its option spellings from it.
        found = ffmpeg_compat.detect()
        if found is None:  # not installed, or a version line nobody prints: try the newest
            log.warning("ffmpeg version unknown; using the newest option spellings")
            self.ffmpeg_release = ffmpeg_compat.NEWEST
        else:
            log.info("%s", found.text)
            self.ffmpeg_release = found.release

    def cameras(self) -> list[VideoDevice]:
        return udev.video_devices(self._context) + self.extra_cameras

    def microphones(self) -> list[AudioDevice]:
        return (udev.sound_devices(self._context, capture=True, onboard=self.onboard_audio)
                + self.extra_microphones)

    def speakers(self) -> list[AudioDevice]:
        return udev.sound_devices(self._context, capture=False, onboard=self.onboard_audio)

    def displays(self) -> list[Display]:
        return sysinfo.displays(self.sysfs_root)

    def sample_picture(self, camera: VideoDevice, criteria: PictureCriteria) -> PictureSample:
        return media.sample_picture(media.camera_input(camera.node), criteria,
                                    self.ffmpeg_release)

    def record(self, microphone: AudioDevice, seconds: float = 1.0) -> AudioClip:
        if microphone.pcm.startswith(PULSE_PREFIX):
            return media.record_pulse(microphone.pcm.removeprefix(PULSE_PREFIX),
                                      pulse_server(self.pulse_server), seconds)
        return media.record_pcm(microphone.pcm, seconds)

    def holders(self, device: VideoDevice | AudioDevice) -> list[Holder]:
        if isinstance(device, VideoDevice):
            return holders.holders(device.node, self.proc_root)  # a URL has no holder
        node = holders.pcm_node(device.pcm, self.asound_root, self.snd_root)
        return (holders.holders(node, self.proc_root)
                or holders.pcm_owners(device.pcm, self.asound_root, self.proc_root))

    def ping(self, host: str, count: int = 5, timeout_s: float = 1.0) -> PingResult:
        return netio.ping(host, count, timeout_s)

    def resolve(self, host: str) -> float:
        return netio.resolve(host)

    def probe_stream(self, url: str, timeout_s: float = 5.0) -> StreamInfo:
        return stream.probe_stream(url, self.ffmpeg_release, timeout_s)

    def download(self, url: str, nbytes: int, timeout_s: float) -> float:
        from agent.hardware import throughput  # only a bandwidth test needs HTTP

        return throughput.download(url, nbytes, timeout_s)

    def upload(self, url: str, nbytes: int, timeout_s: float) -> float:
        from agent.hardware import throughput  # only a bandwidth test needs HTTP

        return throughput.upload(url, nbytes, timeout_s)

    def net_bytes(self) -> tuple[int, int]:
        return sysinfo.net_bytes()

    def system(self) -> SystemStats:
        return sysinfo.system_stats(self.disk_path)

    def host(self) -> dict[str, Any]:
        return {**sysinfo.host_facts(), "backend": self.kind}

    def watch(self, callback: HotplugCallback) -> StopWatching:
        with self._tracker_lock:
            if self._tracker is None:
                self._tracker = DeviceTracker(self)
            tracker = self._tracker
        tracker.add(callback)
        try:
            stop_monitor = udev.monitor(self._context, tracker.poll)
        except (OSError, pyudev.DeviceNotFoundError) as exc:
            # No netlink here (a locked-down container): look every few seconds instead.
            log.warning("udev monitor unavailable (%s); polling for devices", exc)
            stop_monitor = poll_every(tracker.poll, self.poll_s, "linux-hotplug")

        def stop() -> None:
            stop_monitor()
            tracker.remove(callback)

        return stop
