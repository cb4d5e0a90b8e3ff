"""The fleet's ``set-expected`` command: verified like every command, refused with a reason
when its args are bad, persisted as the baseline, and reported against from then on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.baseline import FILE_NAME, FLEET, Baseline
from agent.commands import CommandError, CommandVerifier, NonceStore
from agent.config import CommandsConfig
from agent.contract import CAP_EXPECTED, MAX_EXPECTED, Kind, RefusalReason, decode
from fleet.broker import Mosquitto
from tests.agent.agentkit import (
    PREFIX,
    Message,
    Subscriber,
    make_config,
    public_key,
    running_agent,
    sign,
)

KEY = Ed25519PrivateKey.generate()
# Not in the simulated classroom (its devices are named by port, see
# agent.hardware.scenario); the id as the Linux backend would name a Logitech C920.
ABSENT = "046d:082d:8A2B3C4D"
PRESENT = "usb-0000:00:14.0-1"  # the default scenario's teacher camera


def _verifier(tmp_path: Path) -> CommandVerifier:
    config = CommandsConfig(fleet_public_key=public_key(KEY))
    return CommandVerifier("room-1", config, NonceStore(tmp_path / "nonces.sqlite"))


@pytest.mark.parametrize(("args", "says"), [
    ({}, "one or more of"),
    ({"cameras": "046d:082d:1"}, "wrong type"),
    ({"displays": ["HDMI-A-1"]}, "no argument 'displays'"),
    ({"cameras": [ABSENT, ABSENT]}, "twice"),
    ({"cameras": [""]}, "not a device id"),
    ({"cameras": ["046d:082d:has space"]}, "not a device id"),
    ({"cameras": ["x" * 111]}, "not a device id"),
    ({"microphones": [42]}, "not a device id"),
    ({"speakers": [f"sp{i}" for i in range(MAX_EXPECTED + 1)]}, f"at most {MAX_EXPECTED}"),
])
def test_bad_args_are_refused_and_nothing_is_kept(tmp_path: Path, args: dict[str, Any],
                                                  says: str) -> None:
    verifier = _verifier(tmp_path)
    bad = sign(KEY, "room-1", "set-expected", args, nonce="n1")
    with pytest.raises(CommandError) as err:
        verifier.verify(json.dumps(bad).encode())
    assert err.value.reason is RefusalReason.BAD_ARGS
    assert says in err.value.message
    # A refused command keeps no nonce: the same nonce with good args goes through.
    good = sign(KEY, "room-1", "set-expected", {"cameras": [ABSENT]}, nonce="n1")
    accepted = verifier.verify(json.dumps(good).encode())
    assert accepted.args == {"cameras": [ABSENT]}


def test_an_unsigned_or_foreign_set_expected_is_refused(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path)
    forged = sign(Ed25519PrivateKey.generate(), "room-1", "set-expected", {"cameras": [ABSENT]})
    foreign = sign(KEY, "room-2", "set-expected", {"cameras": [ABSENT]})
    for cmd, reason in ((forged, RefusalReason.BAD_SIGNATURE),
                        (foreign, RefusalReason.FOREIGN_DEVICE)):
        with pytest.raises(CommandError) as err:
            verifier.verify(json.dumps(cmd).encode())
        assert err.value.reason is reason


def test_the_fleet_list_wins_over_config_and_learning(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    baseline = Baseline(path, {"speakers": ["configured-speaker"]})
    learned = {"usb-1": {"name": "Mic 1"}}
    assert set(baseline.expected("microphones", learned)) == {"usb-1"}
    assert baseline.assign({"microphones": ["usb-1", "usb-9"], "speakers": []})
    # A device already known keeps its name; the role not named keeps what it had.
    assert baseline.expected("microphones", learned)["usb-1"]["name"] == "Mic 1"
    assert set(baseline.expected("microphones", learned)) == {"usb-1", "usb-9"}
    assert baseline.expected("speakers", {"sp": {}}) == {}
    assert set(baseline.expected("cameras", {"cam": {}})) == {"cam"}  # learned
    # After a "reboot" with the same config.
    again = Baseline(path, {"speakers": ["configured-speaker"]})
    assert again.snapshot() == {"cameras": ["cam"], "microphones": ["usb-1", "usb-9"],
                                "speakers": []}
    roles = json.loads(path.read_text())["roles"]
    assert roles["microphones"]["source"] == FLEET and "source" not in roles["cameras"]


def test_an_unsaved_list_is_in_force_and_said(tmp_path: Path) -> None:
    baseline = Baseline(tmp_path / "gone" / FILE_NAME)  # its directory does not exist
    assert baseline.assign({"cameras": [ABSENT]}) is False
    assert set(baseline.expected("cameras", {})) == {ABSENT}


def _result(sub: Subscriber, command_id: str) -> dict[str, Any]:
    (_, payload, _), = sub.wait_for(
        lambda m: m[0].endswith("/cmd/result") and m[1].get("id") == command_id)
    return payload


def _cameras_after(sub: Subscriber, seq: int) -> dict[str, dict[str, Any]]:
    def pred(m: Message) -> bool:
        return m[0].endswith("/telemetry") and m[1]["seq"] > seq

    (_, telemetry, _), = sub.wait_for(pred)
    decode("room-1", Kind.TELEMETRY, json.dumps(telemetry).encode())
    return {d["id"]: d for d in telemetry["sections"]["cameras"]["devices"]}


def test_set_expected_over_mqtt_persists_and_reports_missing(broker: Mosquitto,
                                                             tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600},
                      commands={"fleet_public_key": public_key(KEY)})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    cmd_topic = f"{PREFIX}/dev/room-1/cmd"
    with running_agent(cfg):
        (_, birth, _), = sub.wait_for(
            lambda m: m[0].endswith("/status") and m[1]["state"] == "online")
        assert CAP_EXPECTED in birth["inventory"]["agent"]["capabilities"]
        assert ABSENT not in _cameras_after(sub, 0)  # the first telemetry (may share its seq)

        bad = sign(KEY, "room-1", "set-expected", {"cameras": ABSENT})
        sub.publish(cmd_topic, bad)
        refusal = _result(sub, bad["id"])
        assert (refusal["ok"], refusal["reason"]) == (False, RefusalReason.BAD_ARGS.value)

        command = sign(KEY, "room-1", "set-expected", {"cameras": [PRESENT, ABSENT]})
        sub.publish(cmd_topic, command)
        answer = _result(sub, command["id"])
        assert answer["ok"] is True
        # Reported at once (the interval is an hour): the absent camera is missing.
        cameras = _cameras_after(sub, answer["seq"])
        assert cameras[ABSENT]["ok"] is False and cameras[ABSENT]["present"] is False
        assert cameras[PRESENT]["expected"] is True
        assert [d for d in cameras.values() if not d["expected"]], \
            "the default scenario's other camera is present but no longer expected"
    sub.messages.clear()
    with running_agent(cfg):
        (_, birth, _), = sub.wait_for(
            lambda m: m[0].endswith("/status") and m[1]["state"] == "online")
        assert birth["inventory"]["agent"]["expected"]["cameras"] == sorted([PRESENT, ABSENT])
        # Any telemetry now is this run's (cleared above); the first may carry the birth's
        # own seq, as the birth names the last seq handed out.
        cameras = _cameras_after(sub, 0)
        assert cameras[ABSENT]["present"] is False, "still missing after a restart"
    sub.close()
