"""Fuzzing the wire contract's decoder: whatever arrives on a topic, ``decode`` answers
with a payload that keeps the contract's promises or a ``ContractError`` with a known
reason, never anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.contract import (
    MAX_DEPTH,
    ContractError,
    Kind,
    decode,
    parse_topic,
    parse_ts,
)
from tests.agent_payloads import AGENT_DEVICE, JSON_VALUES, near_valid
from tests.fuzzing import fuzz_settings

FROM_AGENTS = sorted(set(Kind) - {Kind.CMD})
REASONS = {"too-large", "bad-json", "too-deep", "bad-schema", "device-mismatch", "bad-ts",
           "missing-field", "bad-seq", "bad-state", "bad-verdict", "bad-event", "bad-field",
           "out-of-range"}


def decoded_or_refused(kind: Kind, data: bytes) -> dict[str, Any] | None:
    try:
        payload = decode(AGENT_DEVICE, kind, data)
    except ContractError as exc:
        assert exc.reason in REASONS, exc
        return None
    # What the fleet builds on without checking again.
    assert payload["device_id"] == AGENT_DEVICE
    assert parse_ts(payload["ts"]).tzinfo is not None
    seq = payload["seq"]
    assert isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
    if kind is Kind.STATUS:
        assert payload["state"] in ("online", "offline") and isinstance(payload["session"], int)
    if kind is Kind.TELEMETRY:
        assert isinstance(payload["sections"], dict)
    return payload


@pytest.mark.fuzz
@fuzz_settings
@given(kind=st.sampled_from(FROM_AGENTS), data=st.binary(max_size=4096))
def test_any_bytes_decode_or_are_refused(kind: Kind, data: bytes) -> None:
    decoded_or_refused(kind, data)


@pytest.mark.fuzz
@fuzz_settings
@given(kind=st.sampled_from(FROM_AGENTS), value=JSON_VALUES)
def test_any_json_decodes_or_is_refused(kind: Kind, value: Any) -> None:
    decoded_or_refused(kind, json.dumps(value).encode())


@pytest.mark.fuzz
@fuzz_settings
@given(data=st.data())
def test_near_valid_agent_messages_decode_or_are_refused(
    agent_payloads: list[tuple[Kind, bytes]], data: st.DataObject
) -> None:
    kind, raw = data.draw(near_valid(agent_payloads))
    decoded_or_refused(kind, raw)


def test_the_real_agent_messages_all_decode(agent_payloads: list[tuple[Kind, bytes]]) -> None:
    assert all(decoded_or_refused(kind, raw) for kind, raw in agent_payloads)


@pytest.mark.parametrize("data", [
    b"[" * 60_000 + b"]" * 4_000,  # deeper than Python's recursion limit
    b'{"seq": ' + b"9" * 5_000 + b"}",  # past Python's 4,300-digit integer limit
    b'{"schema": 1, "x": NaN}',
    b'{"schema": 1, "x": 1e999}',
])
def test_what_broke_the_decoder_before_is_bad_json(data: bytes) -> None:
    with pytest.raises(ContractError) as err:
        decode(AGENT_DEVICE, Kind.TELEMETRY, data)
    assert err.value.reason == "bad-json"


def test_nesting_beyond_the_bound_is_refused(agent_payloads: list[tuple[Kind, bytes]]) -> None:
    kind, raw = next((k, r) for k, r in agent_payloads if k is Kind.TELEMETRY)
    payload = json.loads(raw)
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    payload["sections"]["extra"] = deep
    with pytest.raises(ContractError) as err:
        decode(AGENT_DEVICE, kind, json.dumps(payload).encode())
    assert err.value.reason == "too-deep"


@pytest.mark.fuzz
@fuzz_settings
@given(name=st.text(max_size=80))
def test_any_topic_parses_or_is_refused(name: str) -> None:
    try:
        device_id, kind = parse_topic("syncclass/v1", name)
    except ContractError as exc:
        assert exc.reason in {"bad-topic", "bad-device-id"}
    else:
        assert name == f"syncclass/v1/dev/{device_id}/{kind.value}"
