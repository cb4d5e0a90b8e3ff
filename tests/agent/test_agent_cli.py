"""``syncclass-agent check`` / ``inventory`` for a technician, and systemd notifications."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from agent.cli import main
from agent.watchdog import Notifier
from fleet.broker import Mosquitto
from tests.agent.agentkit import make_config, running_agent
from tests.agent.fixtures.speedtest import SpeedTest, speedtest
from tests.waiting import wait_until

__all__ = ["speedtest"]  # fixture used here

UNPLUGGED = """
name = "room-301"
[[camera]]
id = "cam0"
name = "Teacher camera"
[[microphone]]
id = "mic0"
[[speaker]]
id = "spk0"
[[display]]
id = "card0-HDMI-A-1"
[[fault]]
kind = "camera_unplugged"
device = "cam0"
"""


def test_check_without_a_bandwidth_url_warns_with_exit_code_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('device_id = "room-1"\n')
    code = main(["check", "--config", str(config), "--simulate", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["verdict"], code) == ("warn", 1)
    assert [(f["level"], f["reason"]) for f in report["findings"]] == [
        ("warn", "bandwidth_untested")]
    assert {"system", "cameras", "network"} <= set(report["probes"])
    assert report["request_id"] is None


def test_check_of_a_healthy_classroom_passes_with_exit_code_0(
        tmp_path: Path, speedtest: SpeedTest, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "room-1"\n[network]\nbandwidth_url = "{speedtest.url}"\n')
    code = main(["check", "--config", str(config), "--simulate", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["verdict"], code, report["findings"]) == ("pass", 0, [])
    assert report["probes"]["bandwidth"]["down_mbps"] > 0


def test_check_text_names_the_missing_camera_in_both_languages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(UNPLUGGED)
    assert main(["check", "--simulate", str(scenario)]) == 2
    out = capsys.readouterr().out
    assert "不通过 FAIL" in out
    assert "摄像头" in out and "Camera" in out


def test_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(UNPLUGGED)
    assert main(["inventory", "--simulate", str(scenario), "--json"]) == 0
    inventory = json.loads(capsys.readouterr().out)
    assert inventory["cameras"] == [], "the unplugged camera is not listed"
    assert [m["id"] for m in inventory["microphones"]] == ["mic0"]
    assert main(["inventory", "--simulate"]) == 0
    assert "摄像头 cameras: 2" in capsys.readouterr().out


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    return sock


def test_notifier_is_silent_without_systemd(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sock = _notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    under_systemd = Notifier()
    monkeypatch.delenv("NOTIFY_SOCKET")
    by_hand = Notifier()
    assert under_systemd.enabled and not by_hand.enabled
    by_hand.ready("up")
    by_hand.ping()
    by_hand.stopping()
    under_systemd.ready("up")
    # Datagrams arrive in order: had the silent one sent anything, it would come first.
    assert sock.recv(1024) == b"READY=1\nSTATUS=up"
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(1024)
    sock.close()


def test_agent_tells_systemd_ready_and_pings_the_watchdog(broker: Mosquitto,
                                                          tmp_path: Path) -> None:
    sock = _notify_socket(tmp_path)
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "notify"),
                                 "WATCHDOG_USEC": "200000"})
    assert notifier.ping_interval == 0.1
    received: list[str] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                received.extend(sock.recv(1024).decode().split("\n"))
            except TimeoutError:
                return
            if "STOPPING=1" in received:
                done.set()

    listener = threading.Thread(target=listen)
    listener.start()
    with running_agent(make_config(tmp_path, broker.url), notifier=notifier):
        assert wait_until(lambda: received.count("WATCHDOG=1") >= 2, 10), \
            f"fewer than two watchdog pings: {received}"
    listener.join(10)
    sock.close()
    assert received[0] == "READY=1"
    assert received.count("WATCHDOG=1") >= 2
    assert received[-1] == "STOPPING=1"
