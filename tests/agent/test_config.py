"""The agent config: the example file loads, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.cli import EX_CONFIG, main
from agent.config import AgentConfig, load_config, parse_config
from agent.settings import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "provisioning" / "agent.example.toml"


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.device_id == "zj-lishui-qy-xiaoxue-301"
    assert cfg.mqtt.tls and cfg.mqtt.port == 8883 and cfg.mqtt.host == "mqtt.syncclass.example.cn"
    assert cfg.thresholds.need_up_mbps == 3.0
    assert cfg.commands.allowed_units == ["syncclass-player.service"]  # pipewire: user unit
    # A plain classroom: udev finds the devices, and nothing example-only is probed or
    # trusted (the fleet's key comes from `syncclass-fleet public-key` or enrolment).
    assert cfg.hardware.cameras == {} and cfg.hardware.microphones == {}
    assert cfg.network.targets == {} and cfg.network.bandwidth_url is None
    assert cfg.commands.fleet_public_key is None and cfg.mqtt.ca_file is None
    assert cfg.probes == {}


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "r1"\n[agent]\nstate_dir = "state"\n'
                    '[mqtt]\nca_file = "ca.crt"\n')
    cfg = load_config(path)
    assert cfg.agent.state_dir == tmp_path / "state"
    assert cfg.mqtt.ca_file == tmp_path / "ca.crt"
    assert (cfg.mqtt.keepalive, cfg.agent.interval, cfg.mqtt.port) == (10, 15.0, 1883)
    assert cfg.commands.reboot_command == ["systemctl", "reboot"]
    assert isinstance(parse_config({"device_id": "r1"}), AgentConfig)


@pytest.mark.parametrize(("data", "key"), [
    ({}, "device_id"),
    ({"device_id": "bad/id"}, "device_id"),
    ({"device_id": "r1", "mqtt": {"url": "http://x"}}, "mqtt.url"),
    ({"device_id": "r1", "mqtt": {"url": "mqtt://x:99999"}}, "mqtt.url"),
    ({"device_id": "r1", "mqtt": {"keepalive": "10"}}, "mqtt.keepalive"),
    ({"device_id": "r1", "mqtt": {"keepalive": 1}}, "mqtt.keepalive"),
    ({"device_id": "r1", "mqtt": {"pasword": "x"}}, "mqtt.pasword"),
    ({"device_id": "r1", "mqtt": {"password": "x"}}, "mqtt.password"),
    ({"device_id": "r1", "mqtt": {"prefix": "a/#"}}, "mqtt.prefix"),
    ({"device_id": "r1", "hardware": {"backend": "usb"}}, "hardware.backend"),
    ({"device_id": "r1", "agent": {"interval": 0}}, "agent.interval"),
    ({"device_id": "r1", "agent": {"spool_max_bytes": 1000}}, "agent.spool_max_bytes"),
    ({"device_id": "r1", "commands": {"fleet_public_key": "abc"}}, "commands.fleet_public_key"),
    ({"device_id": "r1", "commands": {"fleet_public_key": "AAAA"}},
     "commands.fleet_public_key"),
    ({"device_id": "r1", "commands": {"allowed_units": "sshd"}}, "commands.allowed_units"),
    ({"device_id": "r1", "commands": {"reboot_command": []}}, "commands.reboot_command"),
    ({"device_id": "r1", "network": {"targets": {"gw": 1}}}, "network.targets.gw"),
    ({"device_id": "r1", "thresholds": {"rtt_warn_ms": "fast"}}, "thresholds.rtt_warn_ms"),
    ({"device_id": "r1", "intervall": 5}, "intervall"),
    ({"device_id": "r1", "probes": {"camera": False}}, "probes.camera"),
    ({"device_id": "r1", "probes": {"cameras": "off"}}, "probes.cameras"),
    ({"device_id": "r1", "hardware": {"cameras": {"door": " "}}}, "hardware.cameras.door"),
    ({"device_id": "r1", "hardware": {"microphones": {"room": 1}}},
     "hardware.microphones.room"),
    ({"device_id": "r1", "commands": {"user_units": ["pipewire.service"]}},
     "commands.user_units"),
    ({"device_id": "r1", "commands": {"allowed_units": ["pipewire.service"],
                                      "user_units": ["pipewire.service"]}},
     "commands.user_restart_command"),
    ({"device_id": "r1", "agent": {"sample_every_s": -1}}, "agent.sample_every_s"),
    ({"device_id": "r1", "agent": {"quiet_hold_s": -1}}, "agent.quiet_hold_s"),
])
def test_malformed_config_names_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key
    assert repr(key) in str(err.value)


def test_cli_reports_the_bad_key_and_exits_ex_config(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "r1"\n[mqtt]\nurl = "tcp://broker"\n')
    assert main(["run", "--config", str(path)]) == EX_CONFIG
    assert "'mqtt.url'" in capsys.readouterr().err
    path.write_text('device_id = "r1"\n[mqtt\n')
    assert main(["check", "--config", str(path)]) == EX_CONFIG
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["inventory", "--config", str(tmp_path / "missing.toml")]) == EX_CONFIG
    assert "file not found" in capsys.readouterr().err


def test_configured_devices_and_probes_reach_the_agent() -> None:
    from agent.app import open_hardware, probe_runner

    cfg = parse_config({
        "device_id": "r1",
        "hardware": {"backend": "linux", "cameras": {"podium": "rtsp://192.168.1.64/1"},
                     "microphones": {"room": "default"}},
        "probes": {"displays": False, "bandwidth": False},
        "network": {"av_hosts": {"recorder": "http://192.168.1.70"}},
    })
    hardware = open_hardware(cfg)
    assert [(c.id, c.node) for c in hardware.cameras()] == [("podium", "rtsp://192.168.1.64/1")]
    assert [(m.id, m.pcm) for m in hardware.microphones()] == [("room", "default")]
    assert set(probe_runner(cfg, hardware).probes) == {
        "system", "cameras", "microphones", "speakers", "network", "avgear"}
    assert probe_runner(cfg, hardware).ctx.av_hosts == {"recorder": "http://192.168.1.70"}
