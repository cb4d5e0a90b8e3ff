"""The simulated classroom's scenario file (TOML) and its timed faults.

Example (``provisioning/scenarios/*.toml`` hold more)::

    name = "demo-classroom"
    [[camera]]
    id = "cam0"
    name = "Teacher camera"
    [[microphone]]
    id = "mic0"
    level_dbfs = -30
    [[speaker]]
    id = "spk0"
    [[display]]
    id = "card0-HDMI-A-1"
    monitor = "EPSON PJ"
    [network]
    up_mbps = 20
    down_mbps = 50
    http = false            # true: bandwidth tests move real bytes to and from the URL
    [network.default]       # any host not listed under network.hosts
    rtt_ms = 20
    [network.hosts."peer.example"]
    rtt_ms = 45
    jitter_ms = 5
    [[fault]]               # a camera unplugged 30 s after start, back at 90 s
    at = 30
    until = 90
    kind = "camera_unplugged"
    device = "cam0"
    [[fault]]
    at = 60
    kind = "packet_loss"
    device = "peer.example" # a host; empty means every host
    value = 8

Times are seconds since the backend started.  A fault without ``until`` lasts until
``SimulatedHardware.clear`` removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.settings import ConfigError, load_toml, section

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Link",
    "Scenario",
    "SimAudio",
    "SimCamera",
    "SimDisplay",
    "SimNetwork",
    "SimSystem",
    "default_scenario",
    "load_scenario",
]

#: Fault kind -> does it need a ``value``.
FAULT_KINDS: Final[dict[str, bool]] = {
    "camera_unplugged": False,
    "camera_black": False,
    "camera_frozen": False,
    "mic_unplugged": False,
    "mic_silent": False,
    "mic_clipping": False,
    "speaker_unplugged": False,
    "display_disconnected": False,
    "packet_loss": True,  # percent
    "rtt": True,  # ms
    "jitter": True,  # ms
    "dns_failure": False,
    "bandwidth_up": True,  # Mbit/s
    "bandwidth_down": True,
    "disk_full": False,  # value: percent used, default 99
    "overheat": False,  # value: °C, default 95
    "device_in_use": False,  # a camera or microphone held by the lesson's app
    "cpu_busy": False,  # value: percent, default 100
    "clock_unsynced": False,
    # What the Linux backend meets when a capture or a probe goes wrong, not missing:
    "camera_capture_failed": False,  # ffmpeg gets no frames from a camera that is there
    "mic_capture_failed": False,  # arecord fails on a microphone that is there
    "icmp_not_permitted": False,  # no ping socket nor raw socket: ping_group_range unset
    "dns_slow": False,  # value: ms per lookup, default 4000
    "probe_error": False,  # psutil raises: the disk path is gone (an unmounted volume)
}


@dataclass(frozen=True)
class Fault:
    kind: str
    device: str = ""  # device id or host; empty: every device of that kind
    value: float | None = None
    at: float = 0.0
    until: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")
        if FAULT_KINDS[self.kind] and self.value is None:
            raise ValueError(f"fault {self.kind!r} needs a value")
        if self.until is not None and self.until <= self.at:
            raise ValueError(f"fault {self.kind!r}: until ({self.until}) must be after at")

    def hits(self, kind: str, device: str) -> bool:
        return self.kind == kind and self.device in ("", device)


@dataclass(frozen=True)
class SimCamera:
    id: str
    name: str = "USB camera"
    vendor: str = "Simulated"
    model: str = "SIM-CAM"
    serial: str = ""
    bus_path: str = ""


@dataclass(frozen=True)
class SimAudio:
    id: str
    name: str = "USB audio"
    vendor: str = "Simulated"
    model: str = "SIM-AUDIO"
    serial: str = ""
    bus_path: str = ""
    level_dbfs: float = -30.0  # RMS of what the microphone hears


@dataclass(frozen=True)
class SimDisplay:
    id: str
    monitor: str = "Projector"
    connected: bool = True


@dataclass(frozen=True)
class Link:
    rtt_ms: float = 20.0
    jitter_ms: float = 2.0
    loss_pct: float = 0.0


@dataclass(frozen=True)
class SimNetwork:
    up_mbps: float = 20.0
    down_mbps: float = 50.0
    dns_ms: float = 5.0
    # Passive interface rates while a lesson streams (a 1080p call each way).
    tx_mbps: float = 3.0
    rx_mbps: float = 3.0
    default: Link = field(default_factory=Link)
    hosts: dict[str, Link] = field(default_factory=dict)
    # Bandwidth tests move real bytes over HTTP to the test URL, so a refusing or missing
    # server fails them as on a real classroom; the figures stay the ones above.
    http: bool = False


@dataclass(frozen=True)
class SimSystem:
    cpu_pct: float = 25.0
    mem_pct: float = 40.0
    disk_pct: float = 35.0
    temp_c: float | None = 55.0
    uptime_s: float = 3600.0
    clock_synced: bool = True
    cpus: int = 4


@dataclass(frozen=True)
class Scenario:
    name: str = "simulated-classroom"
    camera: list[SimCamera] = field(default_factory=list)
    microphone: list[SimAudio] = field(default_factory=list)
    speaker: list[SimAudio] = field(default_factory=list)
    display: list[SimDisplay] = field(default_factory=list)
    network: SimNetwork = field(default_factory=SimNetwork)
    system: SimSystem = field(default_factory=SimSystem)
    fault: list[Fault] = field(default_factory=list)


def default_scenario() -> Scenario:
    """A healthy classroom: teacher and student cameras, a mic, a speaker, a projector."""
    return Scenario(
        camera=[
            SimCamera("usb-0000:00:14.0-1", "Teacher camera", serial="T0001",
                      bus_path="usb-0000:00:14.0-1"),
            SimCamera("usb-0000:00:14.0-2", "Student camera", serial="S0001",
                      bus_path="usb-0000:00:14.0-2"),
        ],
        microphone=[SimAudio("usb-0000:00:14.0-3", "Ceiling microphone")],
        speaker=[SimAudio("pci-0000:00:1f.3", "Classroom speaker")],
        display=[SimDisplay("card0-HDMI-A-1")],
    )


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; a bad key or fault raises ConfigError naming it."""
    try:
        return section(Scenario, load_toml(path), "")
    except ConfigError as exc:
        if exc.key == str(path):
            raise
        detail = str(exc).removeprefix(f"config key {exc.key!r}: ")
        raise ConfigError(f"{path}:{exc.key}", detail) from None
