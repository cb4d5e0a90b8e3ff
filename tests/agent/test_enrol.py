"""The agent's side of enrolment: what it writes, with which permissions, and what it
keeps.  The exchange with a real fleet is in tests/e2e/test_enrolment.py."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.cli import EX_UNAVAILABLE, main
from agent.compat import tomllib
from agent.config import load_config
from agent.enrol import EnrolError, check_fleet_url, split_code_url, write_enrolment
from agent.settings import ConfigError, dump_toml, load_toml
from agent.spool import Spool

EXAMPLE = Path(__file__).parents[2] / "provisioning" / "agent.example.toml"
KEY = "qCydA2Sio4NQimPacN/BdQu7XOJfrlydJKv6XfWfKlw="
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _answer(**extra: Any) -> dict[str, Any]:
    return {
        "device_id": "room7-a1b2c3", "classroom_id": 7, "classroom": "同步课堂教室",
        "school": "洞头区鹿西乡小学", "replaced": False,
        "mqtt": {"url": "mqtts://mqtt.dongtou.example.cn:8883", "username": "room7-a1b2c3",
                 "prefix": "syncclass/v1", "ca_pem": CA},
        "fleet_public_key": KEY, "session_floor": 0, **extra,
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dump_toml_round_trips_the_example_config() -> None:
    doc = load_toml(EXAMPLE)
    assert tomllib.loads(dump_toml(doc)) == doc


def test_a_fresh_machine_gets_a_private_config_that_loads(tmp_path: Path) -> None:
    config_path, state = tmp_path / "etc" / "agent.toml", tmp_path / "state"
    write_enrolment(_answer(), "p" * 43, config_path, state)

    assert _mode(config_path) == 0o600
    assert _mode(state) == 0o700
    assert (tmp_path / "etc" / "broker-ca.pem").read_text() == CA
    config = load_config(config_path)
    assert config.device_id == "room7-a1b2c3"
    assert (config.mqtt.url, config.mqtt.username, config.mqtt.password) == (
        "mqtts://mqtt.dongtou.example.cn:8883", "room7-a1b2c3", "p" * 43)
    assert config.mqtt.ca_file == (tmp_path / "etc" / "broker-ca.pem").resolve()
    assert config.commands.fleet_public_key == KEY
    assert config.agent.state_dir == state.resolve()
    assert not [p for p in config_path.parent.iterdir() if p.name.startswith(".")]


def test_re_enrolling_keeps_local_settings_and_continues_sessions(tmp_path: Path) -> None:
    config_path, state = tmp_path / "agent.toml", tmp_path / "state"
    config_path.write_text(
        'device_id = "old-id"\n[mqtt]\nurl = "mqtt://old:1883"\nusername = "old-id"\n'
        'password = "old"\nkeepalive = 20\nca_file = "/old/ca.pem"\n'
        '[hardware.cameras]\npodium = "rtsp://192.168.1.64/101"\n'
        '[network.targets]\npeer = "10.0.0.2"\n'
    )
    spool = Spool(state / "spool.sqlite")
    assert spool.next_session() == 1
    spool.close()

    answer = _answer(replaced=True, session_floor=140)
    answer["mqtt"]["ca_pem"] = None
    write_enrolment(answer, "n" * 43, config_path, state)

    config = load_config(config_path)
    assert config.mqtt.password == "n" * 43
    assert config.mqtt.keepalive == 20, "a local setting enrolment does not own stays"
    assert config.mqtt.ca_file is None, "no CA from the fleet: the system's CAs"
    assert config.hardware.cameras == {"podium": "rtsp://192.168.1.64/101"}
    assert config.network.targets == {"peer": "10.0.0.2"}
    spool = Spool(state / "spool.sqlite")
    assert spool.next_session() == 141
    spool.close()


def test_an_answer_that_would_not_load_writes_nothing(tmp_path: Path) -> None:
    config_path = tmp_path / "agent.toml"
    config_path.write_text('device_id = "kept"\n')
    with pytest.raises(ConfigError, match="device_id"):
        write_enrolment(_answer(device_id="no spaces allowed"), "p" * 43, config_path,
                        tmp_path / "state")
    assert config_path.read_text() == 'device_id = "kept"\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml"]


def test_code_and_fleet_from_the_qr_code_url() -> None:
    assert split_code_url("https://fleet.example.cn/enrol?code=ABCD-EFGH", None) == (
        "ABCD-EFGH", "https://fleet.example.cn")
    assert split_code_url("ABCD-EFGH", "https://f.example") == ("ABCD-EFGH", "https://f.example")
    with pytest.raises(EnrolError, match="--fleet"):
        split_code_url("ABCD-EFGH", None)
    with pytest.raises(EnrolError, match="code="):
        split_code_url("https://fleet.example.cn/enrol", None)


def test_plain_http_is_refused_beyond_loopback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "agent.toml"
    code = main(["enrol", "ABCD-EFGH", "--fleet", "http://fleet.example.cn",
                 "--config", str(config_path), "--state-dir", str(tmp_path / "state")])
    assert code == 1
    assert "use https://" in capsys.readouterr().err
    assert not config_path.exists()
    check_fleet_url("http://fleet.example.cn", allow_http=True)
    check_fleet_url("http://127.0.0.1:8080", allow_http=False)
    with pytest.raises(EnrolError, match="https"):
        check_fleet_url("ftp://fleet.example.cn", allow_http=True)


def test_an_unreachable_fleet_exits_unavailable_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config_path = tmp_path / "agent.toml"
    code = main(["enrol", "ABCD-EFGH", "--fleet", f"http://127.0.0.1:{port}",
                 "--config", str(config_path), "--state-dir", str(tmp_path / "state")])
    assert code == EX_UNAVAILABLE
    assert "cannot reach" in capsys.readouterr().err
    assert not config_path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another account needs root")
def test_as_root_the_files_go_to_the_agents_account(tmp_path: Path) -> None:
    config_path, state = tmp_path / "agent.toml", tmp_path / "state"
    write_enrolment(_answer(), "p" * 43, config_path, state, owner="nobody")
    nobody = pwd.getpwnam("nobody").pw_uid
    assert config_path.stat().st_uid == nobody
    assert state.stat().st_uid == nobody
    assert (state / "spool.sqlite").stat().st_uid == nobody
    assert (tmp_path / "broker-ca.pem").stat().st_uid == 0  # public, stays root's
