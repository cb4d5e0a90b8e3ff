"""The agent's configuration: one TOML file, typed sections, errors that name the key.

``provisioning/agent.example.toml`` documents every key.  Everything has a default
except ``device_id``, so a classroom's file is short: its id, the broker and its
credentials, the fleet's public key.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.contract import DEFAULT_PREFIX, MAX_PAYLOAD_BYTES, ContractError, unb64
from agent.contract import validate_device_id as _validate_device_id
from agent.hardware import BACKENDS
from agent.hardware.targets import parse_target
from agent.probes import PROBES
from agent.redact import redact
from agent.settings import ConfigError, load_toml, section
from agent.thresholds import Thresholds

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentConfig",
    "CommandsConfig",
    "HardwareConfig",
    "MqttConfig",
    "NetworkConfig",
    "RuntimeConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/syncclass/agent.toml")
# The presence probes whose expected devices [hardware.expected] may list.
EXPECTED_ROLES = ("cameras", "microphones", "speakers")


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # None with mqtts:// means the system's CA store
    prefix: str = DEFAULT_PREFIX
    # 10 s: the broker declares a silent agent dead after 1.5 x keepalive = 15 s.
    keepalive: int = 10
    # Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff And
    # Jitter"): a thousand classrooms losing the broker together come back spread out.
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    # Wrong credentials do not fix themselves: retry rarely instead of hammering the broker.
    auth_retry_s: float = 600.0
    # Commands sent while the agent is briefly offline wait on the broker this long.
    session_expiry_s: int = 3600
    # Unacknowledged QoS 1 publishes at a time (paho refuses more than 65,535).
    max_inflight: int = 20

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


@dataclass(frozen=True)
class HardwareConfig:
    backend: str = "linux"  # "linux" or "simulated"
    scenario: Path | None = None  # simulated backend: the scenario file
    # linux backend: devices udev cannot see, id -> spec.  Cameras: an RTSP URL, a /dev
    # node or "lavfi:..."; microphones: an ALSA PCM such as PipeWire's "default".
    cameras: dict[str, str] = field(default_factory=dict)
    microphones: dict[str, str] = field(default_factory=dict)
    # Onboard PCMs that count as microphones/speakers, as ALSA "card:device" (``aplay -l``:
    # "PCH:0"); the HDA codec and HDMI/DP outputs are always there, so not by default.
    onboard_audio: list[str] = field(default_factory=list)
    # Where microphones given as "pulse:<source>" record (PulseAudio or pipewire-pulse,
    # e.g. "unix:/run/syncclass/pulse/native"); "": $PULSE_SERVER, else the socket of the
    # logged-in user's session under /run/user (not reachable under ProtectHome=yes).
    pulse_server: str = ""
    # Expected device ids per probe ("cameras", "microphones", "speakers"); a role not
    # listed is learned on first start (agent.baseline).
    expected: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeConfig:
    """The ``[agent]`` table."""

    interval: float = 15.0  # seconds between telemetry messages
    # How long one probe may take in a collection before it is reported as timed out
    # (and the telemetry leaves without it); a check's probes get CHECK_DEADLINE_S.
    probe_deadline_s: float = 10.0
    # Cameras and microphones are sampled this often between checks (one device per
    # collection; 0: only in checks), never while held by another process or while a
    # lesson is near: from quiet_lead_s before a lesson the fleet named to its end, or
    # for quiet_hold_s after a check that names a lesson without its times (agent.quiet).
    sample_every_s: float = 120.0
    quiet_lead_s: float = 900.0
    quiet_hold_s: float = 5400.0
    state_dir: Path = Path("/var/lib/syncclass-agent")  # spool, seq, session, nonces
    # Where etc/machine-id and sys/class/net are read for the machine's identity
    # (agent.identity); only tests and containers set it.
    identity_root: Path = Path("/")
    # A day of telemetry at 15 s is 5,760 records; keep a few days of outage.
    spool_max_records: int = 20_000
    spool_max_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class CommandsConfig:
    fleet_public_key: str | None = None  # base64 of the raw 32-byte Ed25519 key
    allowed_units: list[str] = field(default_factory=list)
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])
    restart_command: list[str] = field(default_factory=lambda: ["systemctl", "restart"])
    # Units of the logged-in user's session (pipewire.service, wireplumber.service,
    # pipewire-pulse.service, pulseaudio.service): the system manager does not know them,
    # so they restart with user_restart_command, e.g.
    # ["systemctl", "--user", "-M", "teacher@", "restart"] (polkit must allow it).
    user_units: list[str] = field(default_factory=list)
    user_restart_command: list[str] = field(default_factory=list)
    # Classroom PCs drift when NTP is blocked; a command this far early/late still counts.
    clock_skew_s: float = 120.0
    # A command valid for longer is refused: its nonce must be remembered that long.
    max_validity_s: float = 86_400.0
    command_timeout_s: float = 120.0


@dataclass(frozen=True)
class NetworkConfig:
    targets: dict[str, str] = field(default_factory=dict)  # name -> host
    bandwidth_url: str | None = None
    # Network encoders and recording hosts (录播主机), name -> "http://host", "rtsp://host",
    # "host:port" (pinged, and that port connected to) or a bare "host" (pinged only).
    av_hosts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    device_id: str
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    agent: RuntimeConfig = field(default_factory=RuntimeConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    probes: dict[str, bool] = field(default_factory=dict)  # probe name -> on/off


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def _validate(cfg: AgentConfig) -> None:
    try:
        _validate_device_id(cfg.device_id)
    except ContractError as exc:
        raise ConfigError("device_id", exc.message) from None
    url = urlsplit(cfg.mqtt.url)
    _require(url.scheme in ("mqtt", "mqtts"), "mqtt.url",
             f"{cfg.mqtt.url!r} must start with mqtt:// or mqtts://")
    _require(bool(url.hostname), "mqtt.url", f"{cfg.mqtt.url!r} has no host")
    try:
        url.port  # noqa: B018 - urllib validates the port lazily
    except ValueError as exc:
        raise ConfigError("mqtt.url", str(exc)) from None
    _require(cfg.mqtt.keepalive >= 5, "mqtt.keepalive", "must be at least 5 seconds")
    _require(0 < cfg.mqtt.backoff_min_s <= cfg.mqtt.backoff_max_s, "mqtt.backoff_min_s",
             "must be > 0 and <= mqtt.backoff_max_s")
    _require(cfg.mqtt.auth_retry_s > 0, "mqtt.auth_retry_s", "must be > 0")
    _require(1 <= cfg.mqtt.max_inflight <= 1000, "mqtt.max_inflight", "must be 1..1000")
    _require(cfg.mqtt.password is None or cfg.mqtt.username is not None, "mqtt.password",
             "a password needs mqtt.username")
    _require(bool(cfg.mqtt.prefix) and not cfg.mqtt.prefix.endswith("/")
             and not set("+#") & set(cfg.mqtt.prefix), "mqtt.prefix",
             f"{cfg.mqtt.prefix!r} must be a topic prefix without wildcards or trailing /")
    _require(cfg.hardware.backend in BACKENDS, "hardware.backend",
             f"{cfg.hardware.backend!r} is not one of {', '.join(BACKENDS)}")
    _require(cfg.agent.interval >= 1, "agent.interval", "must be at least 1 second")
    _require(0 < cfg.agent.probe_deadline_s <= 3600, "agent.probe_deadline_s",
             "must be more than 0 and at most 3600 seconds")
    _require(cfg.agent.sample_every_s >= 0, "agent.sample_every_s", "must be >= 0")
    _require(cfg.agent.quiet_lead_s >= 0, "agent.quiet_lead_s", "must be >= 0")
    _require(cfg.agent.quiet_hold_s >= 0, "agent.quiet_hold_s", "must be >= 0")
    _require(cfg.agent.spool_max_records >= 10, "agent.spool_max_records", "must be >= 10")
    _require(cfg.agent.spool_max_bytes >= 4 * MAX_PAYLOAD_BYTES, "agent.spool_max_bytes",
             f"must be >= {4 * MAX_PAYLOAD_BYTES} (four maximal payloads)")
    if cfg.commands.fleet_public_key is not None:
        try:
            raw = unb64(cfg.commands.fleet_public_key)
        except (binascii.Error, ValueError):
            raise ConfigError("commands.fleet_public_key", "is not base64") from None
        _require(len(raw) == 32, "commands.fleet_public_key",
                 f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    _require(bool(cfg.commands.reboot_command), "commands.reboot_command", "is empty")
    _require(bool(cfg.commands.restart_command), "commands.restart_command", "is empty")
    _require(set(cfg.commands.user_units) <= set(cfg.commands.allowed_units),
             "commands.user_units", "every user unit must be in commands.allowed_units too")
    _require(bool(cfg.commands.user_restart_command) or not cfg.commands.user_units,
             "commands.user_restart_command", "is empty, but commands.user_units names units")
    _require(cfg.commands.clock_skew_s >= 0, "commands.clock_skew_s", "must be >= 0")
    _require(cfg.commands.max_validity_s > 0, "commands.max_validity_s", "must be > 0")
    for name, host in cfg.network.targets.items():
        _require(bool(host.strip()), f"network.targets.{name}", "is empty")
    for name, spec in cfg.network.av_hosts.items():
        try:
            parse_target(spec)
        except ValueError as exc:
            raise ConfigError(f"network.av_hosts.{name}", redact(str(exc))) from None
    for name in cfg.probes:
        _require(name in PROBES, f"probes.{name}",
                 f"no such probe (known: {', '.join(PROBES)})")
    for role, ids in cfg.hardware.expected.items():
        _require(role in EXPECTED_ROLES, f"hardware.expected.{role}",
                 f"not one of {', '.join(EXPECTED_ROLES)}")
        _require(all(i.strip() for i in ids), f"hardware.expected.{role}", "has an empty id")
    for pcm in cfg.hardware.onboard_audio:
        _require(bool(re.fullmatch(r"[^:\s]+:\d+", pcm)), "hardware.onboard_audio",
                 f"{pcm!r} is not card:device, e.g. PCH:0")
    for kind, devices in (("cameras", cfg.hardware.cameras),
                          ("microphones", cfg.hardware.microphones)):
        for dev_id, spec in devices.items():
            _require(bool(spec.strip()), f"hardware.{kind}.{dev_id}", "is empty")


def parse_config(data: dict[str, Any]) -> AgentConfig:
    """Build and check the config from a parsed TOML document."""
    cfg = section(AgentConfig, data)
    _validate(cfg)
    return cfg


def load_config(path: Path) -> AgentConfig:
    """Read ``path``; relative paths inside it are taken relative to its directory."""
    cfg = parse_config(load_toml(path))
    base = path.resolve().parent

    def rebase(p: Path | None) -> Path | None:
        return None if p is None else base / p

    return replace(
        cfg,
        mqtt=replace(cfg.mqtt, ca_file=rebase(cfg.mqtt.ca_file)),
        hardware=replace(cfg.hardware, scenario=rebase(cfg.hardware.scenario)),
        agent=replace(cfg.agent, state_dir=base / cfg.agent.state_dir),
    )
