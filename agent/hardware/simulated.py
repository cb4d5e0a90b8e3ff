"""A simulated classroom, driven by a scenario (see ``agent.hardware.scenario``).

It is what the demo and the tests use where the machine has no cameras or microphones.
Faults come from the scenario with times (seconds since start, on the injected clock) or
at runtime through ``apply`` / ``clear``.  Everything is deterministic: pictures, audio and
round trips follow from the scenario and the clock alone.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from agent.contract import utcnow
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
    SystemStats,
    VideoDevice,
)
from agent.hardware.events import DeviceTracker, poll_every
from agent.hardware.holders import Holder
from agent.hardware.scenario import Fault, Link, Scenario, SimAudio, default_scenario
from agent.hardware.targets import parse_target

__all__ = ["SimulatedHardware"]

_FRAMES = 40  # as many as the real backend judges
_RATE = 8000  # enough for level and clipping; keeps a simulated second small
# Simulated pings are free, so send enough of them that loss has a 1% resolution.
_SIM_PINGS = 100


class SimulatedHardware(Hardware):
    kind: ClassVar[str] = "simulated"

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_s: float = 0.5,
    ) -> None:
        self.scenario = scenario or default_scenario()
        self._clock = clock
        self._start = clock()
        self._poll_s = poll_s
        self._lock = threading.RLock()
        self._runtime: list[Fault] = []
        self._cleared: set[int] = set()  # indexes of scenario faults cleared at runtime
        self._tracker = DeviceTracker(self)

    # --- faults --------------------------------------------------------------------------

    def elapsed(self) -> float:
        return (self._clock() - self._start).total_seconds()

    def apply(self, fault: Fault) -> None:
        """Start ``fault`` now, until ``clear``; hot-plug watchers hear of it at once."""
        with self._lock:
            self._runtime.append(fault)
        self.poll()

    def clear(self, kind: str, device: str = "") -> None:
        """End every active fault of ``kind`` on ``device`` (empty: on every device)."""
        now = self.elapsed()
        with self._lock:
            self._runtime = [f for f in self._runtime if not _matches(f, kind, device)]
            for i, f in enumerate(self.scenario.fault):
                if _matches(f, kind, device) and _due(f, now):
                    self._cleared.add(i)
        self.poll()

    def active_faults(self) -> list[Fault]:
        now = self.elapsed()
        with self._lock:
            timed = [
                f for i, f in enumerate(self.scenario.fault)
                if i not in self._cleared and _due(f, now)
            ]
            return timed + list(self._runtime)

    def _fault(self, kind: str, device: str = "") -> Fault | None:
        for fault in reversed(self.active_faults()):  # the latest one wins
            if fault.hits(kind, device):
                return fault
        return None

    # --- devices -------------------------------------------------------------------------

    def cameras(self) -> list[VideoDevice]:
        return [
            VideoDevice(c.id, c.name, f"sim:{c.id}", c.vendor, c.model, c.serial, c.bus_path)
            for c in self.scenario.camera
            if not self._fault("camera_unplugged", c.id)
        ]

    def microphones(self) -> list[AudioDevice]:
        return self._audio(self.scenario.microphone, "mic_unplugged")

    def speakers(self) -> list[AudioDevice]:
        return self._audio(self.scenario.speaker, "speaker_unplugged")

    def _audio(self, devices: list[SimAudio], unplug: str) -> list[AudioDevice]:
        return [
            AudioDevice(a.id, a.name, f"sim:{a.id}", a.vendor, a.model, a.serial, a.bus_path)
            for a in devices
            if not self._fault(unplug, a.id)
        ]

    def displays(self) -> list[Display]:
        return [
            Display(d.id, d.connected and not self._fault("display_disconnected", d.id),
                    True, d.monitor)
            for d in self.scenario.display
        ]

    def sample_picture(self, camera: VideoDevice, criteria: PictureCriteria) -> PictureSample:
        if camera.id not in {c.id for c in self.cameras()}:
            raise HardwareError("camera_missing", f"{camera.id} is not connected")
        if self._fault("camera_capture_failed", camera.id):
            # What media.sample_picture raises when ffmpeg ends short of its frames.
            raise HardwareError("camera_capture_failed", f"got 0 of {_FRAMES} frames: "
                                f"{camera.node}: Input/output error")
        if self._fault("camera_black", camera.id):
            return PictureSample(_FRAMES, _FRAMES, None)
        if self._fault("camera_frozen", camera.id):
            return PictureSample(_FRAMES, 0, criteria.frozen_min_s)
        return PictureSample(_FRAMES, 0, None)

    def record(self, microphone: AudioDevice, seconds: float = 1.0) -> AudioClip:
        found = [m for m in self.scenario.microphone if m.id == microphone.id]
        if not found or microphone.id not in {m.id for m in self.microphones()}:
            raise HardwareError("microphone_missing", f"{microphone.id} is not connected")
        if self._fault("mic_capture_failed", microphone.id):
            # What media.record_pcm raises when arecord exits with an error.
            raise HardwareError("microphone_capture_failed",
                                f"{microphone.pcm}: arecord: pcm_read: Input/output error")
        n = int(_RATE * seconds)
        if self._fault("mic_silent", microphone.id):
            return AudioClip(_RATE, array("h", bytes(2 * n)))
        if self._fault("mic_clipping", microphone.id):
            return AudioClip(_RATE, array("h", (32767 if (i // 8) % 2 else -32768
                                                for i in range(n))))
        # A 440 Hz sine whose RMS is the configured level (RMS of a sine = peak / sqrt 2).
        peak = min(32767.0, 32768.0 * 10 ** (found[0].level_dbfs / 20) * math.sqrt(2))
        return AudioClip(_RATE, array("h", (round(peak * math.sin(2 * math.pi * 440 * i / _RATE))
                                            for i in range(n))))

    def holders(self, device: VideoDevice | AudioDevice) -> list[Holder]:
        if self._fault("device_in_use", device.id):
            return [Holder(4242, "classroom-app", "teacher")]
        return []

    # --- network -------------------------------------------------------------------------

    def _link(self, spec: str) -> Link:
        host, _ = parse_target(spec)
        base = self.scenario.network.hosts.get(host, self.scenario.network.default)
        loss, rtt, jitter = (self._fault(k, host) for k in ("packet_loss", "rtt", "jitter"))
        return Link(
            rtt_ms=rtt.value if rtt and rtt.value is not None else base.rtt_ms,
            jitter_ms=jitter.value if jitter and jitter.value is not None else base.jitter_ms,
            loss_pct=loss.value if loss and loss.value is not None else base.loss_pct,
        )

    def ping(self, host: str, count: int = 5, timeout_s: float = 1.0) -> PingResult:
        name, port = parse_target(host)
        if port is None and self._fault("icmp_not_permitted", name):
            # netio's words: a host:port target is timed by TCP connect, which anyone may.
            raise HardwareError(
                "icmp_not_permitted",
                "ICMP needs net.ipv4.ping_group_range to include the agent's group or "
                "CAP_NET_RAW; or give the target as host:port",
                "icmp_not_permitted",
            )
        link = self._link(host)
        answered = _SIM_PINGS - round(_SIM_PINGS * min(100.0, link.loss_pct) / 100)
        # Alternating +-jitter/2 gives a mean consecutive difference of exactly jitter.
        rtts = tuple(
            max(0.0, link.rtt_ms + (link.jitter_ms / 2 if i % 2 else -link.jitter_ms / 2))
            for i in range(answered)
        )
        return PingResult(_SIM_PINGS, rtts, "simulated")

    def resolve(self, host: str) -> float:
        if self._fault("dns_failure", host):
            raise HardwareError("dns_failed", f"cannot resolve {host}: dns_unreachable",
                                "dns_unreachable")
        slow = self._fault("dns_slow", host)
        if slow is not None:
            return slow.value if slow.value is not None else 4000.0
        return self.scenario.network.dns_ms

    def download(self, url: str, nbytes: int, timeout_s: float) -> float:
        if self.scenario.network.http:
            from agent.hardware import throughput  # only a bandwidth test needs HTTP

            throughput.download(url, nbytes, timeout_s)
        fault = self._fault("bandwidth_down")
        return fault.value if fault and fault.value is not None else self.scenario.network.down_mbps

    def upload(self, url: str, nbytes: int, timeout_s: float) -> float:
        if self.scenario.network.http:
            from agent.hardware import throughput  # only a bandwidth test needs HTTP

            throughput.upload(url, nbytes, timeout_s)
        fault = self._fault("bandwidth_up")
        return fault.value if fault and fault.value is not None else self.scenario.network.up_mbps

    def net_bytes(self) -> tuple[int, int]:
        t, net = self.elapsed(), self.scenario.network
        return int(t * net.tx_mbps * 1e6 / 8), int(t * net.rx_mbps * 1e6 / 8)

    # --- system --------------------------------------------------------------------------

    def system(self) -> SystemStats:
        s = self.scenario.system
        if self._fault("probe_error"):
            # What psutil.disk_usage raises when the agent's disk path is unmounted.
            raise FileNotFoundError(2, "No such file or directory", "/")

        def value(kind: str, default: float) -> float | None:
            fault = self._fault(kind)
            if fault is None:
                return None
            return fault.value if fault.value is not None else default

        disk, temp = value("disk_full", 99.0), value("overheat", 95.0)
        cpu = value("cpu_busy", 100.0)
        return SystemStats(
            cpu_pct=cpu if cpu is not None else s.cpu_pct,
            mem_pct=s.mem_pct,
            disk_pct=disk if disk is not None else s.disk_pct,
            temp_c=temp if temp is not None else s.temp_c,
            uptime_s=s.uptime_s + self.elapsed(),
            boot_time=self._start - timedelta(seconds=s.uptime_s),
            clock_synced=s.clock_synced and not self._fault("clock_unsynced"),
        )

    def host(self) -> dict[str, Any]:
        return {
            "hostname": self.scenario.name,
            "os": "simulated",
            "cpus": self.scenario.system.cpus,
            "backend": self.kind,
        }

    # --- hot-plug ------------------------------------------------------------------------

    def poll(self) -> list[dict[str, Any]]:
        """Tell watchers which devices came or went since the last poll."""
        return self._tracker.poll()

    def watch(self, callback: HotplugCallback) -> StopWatching:
        self._tracker.add(callback)
        # Timed scenario faults change the devices without anyone calling poll().
        stop_polling = poll_every(self._tracker.poll, self._poll_s, "sim-hotplug")

        def stop() -> None:
            stop_polling()
            self._tracker.remove(callback)

        return stop


def _due(fault: Fault, now: float) -> bool:
    return fault.at <= now and (fault.until is None or now < fault.until)


def _matches(fault: Fault, kind: str, device: str) -> bool:
    return fault.kind == kind and (device == "" or fault.device == device)
