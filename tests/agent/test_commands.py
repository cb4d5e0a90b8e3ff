"""Signed commands: every refusal and every accepted command, through a real Mosquitto."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.app import load_interval, save_interval
from agent.commands import CommandError, CommandVerifier, NonceStore, check_params
from agent.compat import UTC
from agent.config import CommandsConfig
from agent.contract import Kind, RefusalReason, bandwidth_token, decode, with_bandwidth_token
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

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def _verifier(tmp_path: Path, clock: datetime = NOW, **cfg: Any) -> CommandVerifier:
    config = CommandsConfig(fleet_public_key=public_key(KEY), allowed_units=["pipewire.service"],
                            clock_skew_s=60, **cfg)
    return CommandVerifier("room-1", config, NonceStore(tmp_path / "nonces.sqlite"),
                           clock=lambda: clock)


def _refusal(verifier: CommandVerifier, command: dict[str, Any] | bytes) -> RefusalReason:
    data = command if isinstance(command, bytes) else json.dumps(command).encode()
    with pytest.raises(CommandError) as err:
        verifier.verify(data)
    return err.value.reason


def test_valid_command_is_accepted_once_even_after_restart(tmp_path: Path) -> None:
    cmd = sign(KEY, "room-1", "set-interval", {"seconds": 30}, issued=NOW)
    accepted = _verifier(tmp_path).verify(json.dumps(cmd).encode())
    assert (accepted.id, accepted.name, accepted.args) == (cmd["id"], "set-interval",
                                                           {"seconds": 30})
    # The nonce store is on disk: a new process refuses the replay.
    assert _refusal(_verifier(tmp_path), cmd) is RefusalReason.REPLAYED


@pytest.mark.parametrize(("offset_s", "reason"), [
    (-400, RefusalReason.EXPIRED),  # expired 100 s ago: beyond the 60 s skew allowance
    (-330, None),  # expired 30 s ago: inside the allowance
    (90, RefusalReason.NOT_YET_VALID),  # issued 90 s in the future
    (30, None),  # a fleet clock 30 s ahead is tolerated
])
def test_validity_window_with_clock_skew(tmp_path: Path, offset_s: int,
                                         reason: RefusalReason | None) -> None:
    cmd = sign(KEY, "room-1", "reboot", issued=NOW + timedelta(seconds=offset_s), valid_s=300)
    verifier = _verifier(tmp_path)
    if reason is None:
        assert verifier.verify(json.dumps(cmd).encode()).name == "reboot"
    else:
        assert _refusal(verifier, cmd) is reason


def test_refusals_name_the_reason(tmp_path: Path) -> None:
    v = _verifier(tmp_path)
    other = Ed25519PrivateKey.generate()
    unsigned = sign(KEY, "room-1", "reboot")
    del unsigned["sig"]
    tampered = sign(KEY, "room-1", "set-interval", {"seconds": 30}, issued=NOW)
    tampered["args"]["seconds"] = 1
    cases: list[tuple[dict[str, Any] | bytes, RefusalReason]] = [
        (b"not json", RefusalReason.MALFORMED),
        (b"[1]", RefusalReason.MALFORMED),
        (unsigned, RefusalReason.UNSIGNED),
        (sign(other, "room-1", "reboot", issued=NOW), RefusalReason.BAD_SIGNATURE),
        (tampered, RefusalReason.BAD_SIGNATURE),
        ({**sign(KEY, "room-1", "reboot", issued=NOW), "sig": "!!"}, RefusalReason.BAD_SIGNATURE),
        (sign(KEY, "room-2", "reboot", issued=NOW), RefusalReason.FOREIGN_DEVICE),
        (sign(KEY, "room-1", "format-disk", issued=NOW), RefusalReason.UNKNOWN_COMMAND),
        (sign(KEY, "room-1", "restart-service", {"unit": "sshd.service"}, issued=NOW),
         RefusalReason.NOT_ALLOWED),
        (sign(KEY, "room-1", "restart-service", {}, issued=NOW), RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "set-interval", {"seconds": 0}, issued=NOW), RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "set-interval", {"seconds": "5"}, issued=NOW),
         RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "set-interval", {"seconds": True}, issued=NOW),
         RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "reboot", {"now": True}, issued=NOW), RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "run-check", {"targets": {"peer": 5}}, issued=NOW),
         RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "run-check", {"need_up_mbps": -1}, issued=NOW),
         RefusalReason.BAD_ARGS),
        (sign(KEY, "room-1", "reboot", issued=NOW, valid_s=7 * 86400), RefusalReason.MALFORMED),
        (sign(KEY, "room-1", "reboot", issued=NOW, expires_at="soon"), RefusalReason.MALFORMED),
        (sign(KEY, "room-1", "reboot", issued=NOW, schema=2), RefusalReason.MALFORMED),
    ]
    assert [_refusal(v, c) for c, _ in cases] == [r for _, r in cases]


def test_refused_commands_keep_no_nonce(tmp_path: Path) -> None:
    v = _verifier(tmp_path)
    bad = sign(KEY, "room-1", "set-interval", {"seconds": 0}, issued=NOW, nonce="n1")
    assert _refusal(v, bad) is RefusalReason.BAD_ARGS
    good = sign(KEY, "room-1", "set-interval", {"seconds": 5}, issued=NOW, nonce="n1")
    assert v.verify(json.dumps(good).encode()).args == {"seconds": 5}


def test_without_a_fleet_key_every_command_is_refused(tmp_path: Path) -> None:
    v = CommandVerifier("room-1", CommandsConfig(), NonceStore(tmp_path / "n.sqlite"),
                        clock=lambda: NOW)
    assert _refusal(v, sign(KEY, "room-1", "reboot", issued=NOW)) is RefusalReason.UNSIGNED


def _result(sub: Subscriber, command_id: str) -> dict[str, Any]:
    def pred(m: Message) -> bool:
        return m[0].endswith("/cmd/result") and m[1].get("id") == command_id

    (_, payload, _), = sub.wait_for(pred)
    decode("room-1", Kind.CMD_RESULT, json.dumps(payload).encode())
    return payload


def test_commands_over_mqtt(broker: Mosquitto, tmp_path: Path) -> None:
    rebooted = tmp_path / "rebooted"
    restarted = tmp_path / "restarted"
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600}, commands={
        "fleet_public_key": public_key(KEY),
        "allowed_units": ["pipewire.service", "broken.service", "wireplumber.service"],
        # A unit of the teacher's session: systemctl --user -M teacher@ in production.
        "user_units": ["wireplumber.service"],
        "user_restart_command": ["sh", "-c", f'echo "user $0" > {restarted}'],
        "reboot_command": ["touch", str(rebooted)],
        # $0 is the unit the agent appends; broken.service fails like a missing unit.
        "restart_command": ["sh", "-c", f'[ "$0" != broken.service ] && echo "$0" > {restarted}'
                            ' || { echo "Unit $0 not found." >&2; exit 5; }'],
    })
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    cmd_topic = f"{PREFIX}/dev/room-1/cmd"
    with running_agent(cfg):
        unsigned = sign(KEY, "room-1", "reboot")
        del unsigned["sig"]
        replayed = sign(KEY, "room-1", "set-interval", {"seconds": 1})
        refused = [
            (unsigned, RefusalReason.UNSIGNED),
            (sign(Ed25519PrivateKey.generate(), "room-1", "reboot"),
             RefusalReason.BAD_SIGNATURE),
            (sign(KEY, "room-1", "reboot", issued=datetime.now(UTC) - timedelta(hours=1)),
             RefusalReason.EXPIRED),
            (sign(KEY, "room-2", "reboot"), RefusalReason.FOREIGN_DEVICE),
            (sign(KEY, "room-1", "self-destruct"), RefusalReason.UNKNOWN_COMMAND),
            (sign(KEY, "room-1", "restart-service", {"unit": "ssh.service"}),
             RefusalReason.NOT_ALLOWED),
            (sign(KEY, "room-1", "set-interval", {"seconds": -3}), RefusalReason.BAD_ARGS),
        ]
        for cmd, _ in refused:
            sub.publish(cmd_topic, cmd)
        for cmd, reason in refused:
            result = _result(sub, cmd["id"])
            assert (result["ok"], result["reason"]) == (False, reason.value), result
            assert result["message"]

        sub.publish(cmd_topic, replayed)
        answer = _result(sub, replayed["id"])
        assert answer["ok"] is True
        (_, telemetry, _), = sub.wait_for(
            lambda m: m[0].endswith("/telemetry") and m[1]["seq"] > answer["seq"])
        assert telemetry["interval"] == 1, "the next telemetry runs on the new interval"
        sub.messages.clear()
        sub.publish(cmd_topic, replayed)
        assert _result(sub, replayed["id"])["reason"] == RefusalReason.REPLAYED.value

        restart = sign(KEY, "room-1", "restart-service", {"unit": "pipewire.service"})
        sub.publish(cmd_topic, restart)
        assert _result(sub, restart["id"])["ok"] is True
        assert restarted.read_text().strip() == "pipewire.service"
        user = sign(KEY, "room-1", "restart-service", {"unit": "wireplumber.service"})
        sub.publish(cmd_topic, user)
        assert _result(sub, user["id"])["ok"] is True
        assert restarted.read_text().strip() == "user wireplumber.service"

        broken = sign(KEY, "room-1", "restart-service", {"unit": "broken.service"})
        sub.publish(cmd_topic, broken)
        result = _result(sub, broken["id"])
        assert (result["ok"], result["reason"]) == (False, RefusalReason.FAILED.value)
        assert "exited with 5" in result["message"] and "not found" in result["message"]

        check = sign(KEY, "room-1", "run-check", {"lesson_id": 42, "uplink": False})
        sub.publish(cmd_topic, check)
        assert _result(sub, check["id"])["ok"] is True
        (_, payload, _), = sub.wait_for(lambda m: m[0].endswith("/check"))
        decode("room-1", Kind.CHECK, json.dumps(payload).encode())
        assert (payload["request_id"], payload["lesson_id"]) == (check["id"], 42)

        reboot = sign(KEY, "room-1", "reboot")
        sub.publish(cmd_topic, reboot)
        assert _result(sub, reboot["id"])["ok"] is True
    assert rebooted.exists(), "the reboot command ran after the ok was sent"
    sub.close()


def test_commands_signed_by_the_fleet_signer_are_accepted(tmp_path: Path) -> None:
    """The two ends of the contract agree: fleet.actions.signer -> agent verifier."""
    from fleet.actions.signer import Signer, build_command

    signer = Signer.from_file(tmp_path / "fleet.key")
    config = CommandsConfig(fleet_public_key=signer.public_key_b64)
    verifier = CommandVerifier("room-1", config, NonceStore(tmp_path / "n.sqlite"),
                               clock=lambda: NOW)
    args = {"targets": {"peer": "10.0.0.2"}, "need_up_mbps": 4, "uplink": True,
            "lesson_id": 7}
    cmd = signer.sign(build_command("room-1", "run-check", args, timedelta(minutes=5), NOW))
    accepted = verifier.verify(json.dumps(cmd, ensure_ascii=False).encode())
    assert (accepted.id, accepted.name, accepted.args) == (cmd["id"], "run-check", args)


def test_the_bandwidth_token_rides_in_the_url_because_unknown_args_are_refused(
    tmp_path: Path,
) -> None:
    """Why the fleet pre-signs ``bandwidth_url`` instead of adding a token arg: this
    (v1) agent refuses a run-check with any arg it does not know, and passes the URL on
    to its bandwidth probe as given."""
    verifier = _verifier(tmp_path)
    with_arg = sign(KEY, "room-1", "run-check", {"bandwidth_token": "t"}, issued=NOW)
    assert _refusal(verifier, with_arg) is RefusalReason.BAD_ARGS
    url = with_bandwidth_token("https://fleet.example.cn/api/v1/bandwidth", "room-1.1.mac")
    assert url == "https://fleet.example.cn/api/v1/bandwidth?token=room-1.1.mac"
    presigned = sign(KEY, "room-1", "run-check", {"bandwidth_url": url}, issued=NOW)
    accepted = verifier.verify(json.dumps(presigned).encode())
    assert check_params(accepted.args).bandwidth_url == url
    assert bandwidth_token(url) == ("https://fleet.example.cn/api/v1/bandwidth", "room-1.1.mac")


def test_a_reboot_that_fails_is_reported_after_the_ok(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600}, commands={
        "fleet_public_key": public_key(KEY), "reboot_command": ["false"]})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/cmd/result"])
    with running_agent(cfg):
        reboot = sign(KEY, "room-1", "reboot")
        sub.publish(f"{PREFIX}/dev/room-1/cmd", reboot)
        first, second = sub.wait_for(lambda m: m[1]["id"] == reboot["id"], count=2)
    assert first[1]["ok"] is True
    assert (second[1]["ok"], second[1]["reason"]) == (False, RefusalReason.FAILED.value)
    assert second[1]["seq"] > first[1]["seq"]
    sub.close()


def test_set_interval_survives_a_restart(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600},
                      commands={"fleet_public_key": public_key(KEY)})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    with running_agent(cfg):
        command = sign(KEY, "room-1", "set-interval", {"seconds": 42})
        sub.publish(f"{PREFIX}/dev/room-1/cmd", command)
        assert _result(sub, command["id"])["ok"] is True
    sub.messages.clear()
    with running_agent(cfg) as agent:
        (_, birth, _), = sub.wait_for(
            lambda m: m[0].endswith("/status") and m[1]["state"] == "online")
        (_, telemetry, _), = sub.wait_for(lambda m: m[0].endswith("/telemetry"))
        assert birth["session"] == agent.link.session
    assert (birth["interval"], telemetry["interval"]) == (42, 42)
    sub.close()


@pytest.mark.parametrize("saved", ["0\n", "3601", "nan", "fast", ""])
def test_a_bad_saved_interval_is_ignored_and_said(tmp_path: Path, saved: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "interval"
    path.write_text(saved)
    with caplog.at_level(logging.WARNING, logger="agent.app"):
        assert load_interval(path, 15.0) == 15.0
    assert f"ignoring {path}" in caplog.text


def test_a_saved_interval_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "interval"
    assert load_interval(path, 15.0) == 15.0  # nothing saved yet
    save_interval(path, 2.5)
    assert load_interval(path, 15.0) == 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["interval"], "no temporary file left"
