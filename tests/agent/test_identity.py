"""A cloned disk image: the copy finds itself on another machine and refuses to run as
the enrolled device, before it ever connects (so the real classroom is not thrown off)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.cli import EX_CONFIG, main
from agent.config import load_config
from agent.enrol import write_enrolment
from agent.identity import FILE_NAME, ClonedImage, read_identity, record, verify
from agent.settings import dump_toml
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber, make_config, running_agent

MACHINE_ID = "4c4c4544003610348054b4c04f4e3232"
KEY = "A" * 43 + "="  # 32 bytes of base64


def machine(root: Path, machine_id: str, nics: dict[str, str],
            virtual: dict[str, str] | None = None) -> Path:
    """A machine's /etc/machine-id and /sys/class/net: name -> MAC, physical or virtual."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "machine-id").write_text(machine_id + "\n")
    net = root / "sys" / "class" / "net"
    net.mkdir(parents=True)
    for where, cards in (("pci0000:00/0000:00:1f.6", nics), ("virtual", virtual or {})):
        for name, mac in cards.items():
            real = root / "sys" / "devices" / where / "net" / name
            real.mkdir(parents=True)
            (real / "address").write_text(mac + "\n")
            (net / name).symlink_to(real)
    return root


def test_identity_is_the_machine_id_and_the_physical_cards(tmp_path: Path) -> None:
    root = machine(tmp_path, MACHINE_ID,
                   {"enp1s0": "00:1E:06:45:AA:01", "wlp2s0": "00:00:00:00:00:00"},
                   virtual={"docker0": "02:42:ac:11:00:02", "lo": "00:00:00:00:00:00"})
    found = read_identity(root)
    assert found.machine_id == MACHINE_ID
    assert found.macs == ("00:1e:06:45:aa:01",), "virtual and all-zero MACs are no identity"
    assert read_identity(tmp_path / "nowhere").machine_id == ""


def test_same_machine_passes_a_new_card_too_and_a_clone_fails(tmp_path: Path) -> None:
    state = tmp_path / "state"
    home = machine(tmp_path / "a", MACHINE_ID, {"enp1s0": "00:1e:06:45:aa:01"})
    verify(state, "room-1", read_identity(home))  # first start: recorded
    assert json.loads((state / FILE_NAME).read_text())["macs"] == ["00:1e:06:45:aa:01"]
    verify(state, "room-1", read_identity(home))
    grown = machine(tmp_path / "a2", MACHINE_ID, {"enp1s0": "00:1e:06:45:aa:01",
                                                  "enx00e04c680001": "00:e0:4c:68:00:01"})
    verify(state, "room-1", read_identity(grown))  # a USB network adapter added
    clone = machine(tmp_path / "b", MACHINE_ID, {"enp1s0": "00:1e:06:45:bb:02"})
    with pytest.raises(ClonedImage) as caught:
        verify(state, "room-1", read_identity(clone))
    assert [en for _, en in caught.value.differences] == [
        "no enrolled network card is here (enrolled 00:1e:06:45:aa:01, now 00:1e:06:45:bb:02)"]
    renewed = machine(tmp_path / "c", "0" * 32, {"enp1s0": "00:1e:06:45:aa:01"})
    with pytest.raises(ClonedImage, match="machine-id differs"):
        verify(state, "room-1", read_identity(renewed))
    record(state, "room-1", read_identity(clone))  # what enrolling the copy does
    verify(state, "room-1", read_identity(clone))


def test_a_damaged_record_refuses_rather_than_guesses(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text('{"machine_id": ')
    with pytest.raises(ClonedImage, match="damaged"):
        verify(tmp_path, "room-1", read_identity(tmp_path))


def test_a_cloned_state_dir_refuses_to_run_and_leaves_the_real_device_online(
        broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = machine(tmp_path / "a", MACHINE_ID, {"enp1s0": "00:1e:06:45:aa:01"})
    copy = machine(tmp_path / "b", MACHINE_ID, {"enp1s0": "00:1e:06:45:bb:02"})
    real = make_config(tmp_path, broker.url, agent={"identity_root": str(home)})
    verify(real.agent.state_dir, real.device_id, read_identity(home))
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/status"])
    with running_agent(real):
        sub.wait_for(lambda m: m[1].get("state") == "online")
        # The disk image copied to another PC: same config, same state dir (less the
        # temporary files of the running agent's atomic writes, here and gone at once).
        cloned_state = tmp_path / "cloned-state"
        shutil.copytree(real.agent.state_dir, cloned_state,
                        ignore=shutil.ignore_patterns("*.tmp"))
        config = tmp_path / "clone.toml"
        config.write_text(dump_toml({
            "device_id": "room-1",
            "mqtt": {"url": broker.url},
            "hardware": {"backend": "simulated"},
            "agent": {"state_dir": str(cloned_state), "identity_root": str(copy)},
        }))
        assert main(["run", "--config", str(config)]) == EX_CONFIG
        err = capsys.readouterr().err
        assert "本机不是注册为 room-1 的那台电脑" in err and "syncclass-agent enrol" in err
        assert "00:1e:06:45:aa:01" in err and "00:1e:06:45:bb:02" in err
        # Still the one session it started with: nothing took the client id over.
        sub.wait_for(lambda m: m[1].get("state") == "online")
        assert [m[1]["state"] for m in sub.messages] == ["online"]
    sub.close()


def test_enrolling_the_copy_with_a_code_makes_it_run(tmp_path: Path) -> None:
    copy = machine(tmp_path / "b", MACHINE_ID, {"enp1s0": "00:1e:06:45:bb:02"})
    home = machine(tmp_path / "a", MACHINE_ID, {"enp1s0": "00:1e:06:45:aa:01"})
    config_path, state = tmp_path / "agent.toml", tmp_path / "state"
    config_path.write_text(f'device_id = "room-1"\n[agent]\nidentity_root = "{copy}"\n')
    record(state, "room-1", read_identity(home))  # the image's record, from the original
    answer = {"device_id": "room-2", "classroom": "2", "school": "s", "replaced": False,
              "fleet_public_key": KEY, "session_floor": 0,
              "mqtt": {"url": "mqtt://127.0.0.1:1883", "username": "room-2",
                       "prefix": PREFIX, "ca_pem": None}}
    write_enrolment(answer, "p" * 43, config_path, state)
    stored = json.loads((state / FILE_NAME).read_text())
    assert (stored["device_id"], stored["macs"]) == ("room-2", ["00:1e:06:45:bb:02"])
    config = load_config(config_path)
    verify(config.agent.state_dir, config.device_id, read_identity(config.agent.identity_root))
