from __future__ import annotations

import json

import pytest

from agent import contract
from agent.contract import ContractError, Kind, bandwidth_token, with_bandwidth_token


def test_topic_round_trip() -> None:
    name = contract.topic("syncclass/v1", "dt-001", Kind.CMD_RESULT)
    assert name == "syncclass/v1/dev/dt-001/cmd/result"
    assert contract.parse_topic("syncclass/v1", name) == ("dt-001", Kind.CMD_RESULT)


@pytest.mark.parametrize(
    "name", ["other/dev/a/status", "syncclass/v1/dev/a/nope", "syncclass/v1/dev/+/status"]
)
def test_bad_topics_are_refused(name: str) -> None:
    with pytest.raises(ContractError):
        contract.parse_topic("syncclass/v1", name)


def test_shared_subscription() -> None:
    assert contract.subscription("p", Kind.TELEMETRY, "fleet") == "$share/fleet/p/dev/+/telemetry"


def _telemetry(device: str = "a") -> dict[str, object]:
    return {**contract.envelope(device, 3), "interval": 15, "sections": {}}


def test_decode_accepts_valid_payload() -> None:
    data = contract.encode(_telemetry())
    assert contract.decode("a", Kind.TELEMETRY, data)["seq"] == 3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "bad-json"),
        (b"[1,2]", "bad-json"),
        (json.dumps({**_telemetry(), "schema": 3}).encode(), "bad-schema"),
        (json.dumps({**_telemetry(), "schema": True}).encode(), "bad-schema"),
        (json.dumps(_telemetry("b")).encode(), "device-mismatch"),
        (json.dumps({**_telemetry(), "ts": "2026-01-01T08:00:00"}).encode(), "bad-ts"),
        (json.dumps({**_telemetry(), "seq": True}).encode(), "bad-seq"),
        (json.dumps({k: v for k, v in _telemetry().items() if k != "interval"}).encode(),
         "missing-field"),
        (json.dumps({**_telemetry(), "interval": -5}).encode(), "out-of-range"),
        (json.dumps({**_telemetry(), "sections": []}).encode(), "bad-field"),
        (json.dumps({**_telemetry(), "seq": -1}).encode(), "bad-seq"),
        (b"{" + b" " * contract.MAX_PAYLOAD_BYTES + b"}", "too-large"),
    ],
)
def test_decode_refuses_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as err:
        contract.decode("a", Kind.TELEMETRY, data)
    assert err.value.reason == reason


def test_signing_bytes_ignore_sig_and_key_order() -> None:
    a = {"id": "1", "name": "reboot", "sig": "x"}
    b = {"name": "reboot", "id": "1"}
    assert contract.command_signing_bytes(a) == contract.command_signing_bytes(b)


def test_encode_refuses_oversize() -> None:
    with pytest.raises(ContractError):
        contract.encode({"x": "a" * contract.MAX_PAYLOAD_BYTES})


def test_contract_error_survives_a_with_block() -> None:
    # Python sets __traceback__ on exceptions leaving a with block; a frozen exception
    # type turned that into FrozenInstanceError.
    with pytest.raises(ContractError) as err, open(__file__):
        contract.topic("p", "+", Kind.CMD)
    assert err.value.reason == "bad-device-id"


def test_bandwidth_token_in_the_url() -> None:
    url = "https://fleet.example.cn/api/v1/bandwidth?region=wz"
    signed = with_bandwidth_token(url, "room-1.1780000000.abc-_")
    assert signed == f"{url}&token=room-1.1780000000.abc-_"
    # Signing again replaces the token; other parameters stay, in order.
    assert with_bandwidth_token(signed, "new") == f"{url}&token=new"
    assert bandwidth_token(signed) == (url, "room-1.1780000000.abc-_")
    assert bandwidth_token(url) == (url, None)
