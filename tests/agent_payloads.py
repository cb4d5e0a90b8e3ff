"""What the real agent sends, recorded once per run, and near-valid changes of it: the
seeds of the fuzz tests.

A real agent on a simulated classroom, against a real Mosquitto, connects (birth),
reports telemetry, sees its student camera unplugged (event) and runs a signed pre-class
check (cmd/result, check); every message it published is kept as the bytes it sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from agent.contract import Kind, encode, parse_topic
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber, make_config, public_key, running_agent, sign

__all__ = ["AGENT_DEVICE", "JSON_VALUES", "agent_payloads", "near_valid"]

AGENT_DEVICE = "dev-a"  # a device of tests.fleet.ingest_helpers.inventory_db


@pytest.fixture(scope="session")
def agent_payloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Kind, bytes]]]:
    workdir = tmp_path_factory.mktemp("agent-payloads")
    key = Ed25519PrivateKey.generate()
    hardware = SimulatedHardware(poll_s=0.1)
    with Mosquitto(workdir=workdir / "mqtt") as broker:
        config = make_config(workdir, broker.url, device_id=AGENT_DEVICE,
                             commands={"fleet_public_key": public_key(key)})
        sub = Subscriber(broker.port, [f"{PREFIX}/dev/{AGENT_DEVICE}/#"])
        try:
            with running_agent(config, hardware=hardware):
                sub.wait_for(lambda m: m[0].endswith("/telemetry"))
                hardware.apply(Fault("camera_unplugged", device=hardware.cameras()[1].id))
                sub.wait_for(lambda m: m[0].endswith("/event"))
                check = sign(key, AGENT_DEVICE, "run-check", {"lesson_id": 7, "uplink": False})
                sub.publish(f"{PREFIX}/dev/{AGENT_DEVICE}/cmd", check)
                sub.wait_for(lambda m: m[0].endswith("/check"))
                sub.wait_for(lambda m: m[0].endswith("/telemetry"), count=3)
        finally:
            sub.close()
    sent = [(parse_topic(PREFIX, topic)[1], encode(payload))
            for topic, payload, _ in sub.messages if not topic.endswith("/cmd")]
    assert {kind for kind, _ in sent} == set(Kind) - {Kind.CMD}, "every kind an agent sends"
    assert all(isinstance(json.loads(data), dict) for _, data in sent)
    yield sent


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["online", "pass", "device_removed", "0", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place a value sits in a decoded payload."""
    found = [path] if path else []
    children = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, child in children:
        found += _paths(child, (*path, key))
    return found


@st.composite
def near_valid(draw: st.DrawFn, seeds: list[tuple[Kind, bytes]]) -> tuple[Kind, bytes]:
    """One of the real agent's messages, changed a little: a field replaced by any JSON
    value, removed or added, its seq or ts moved anywhere, or the bytes cut, flipped or
    spliced."""
    kind, data = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["replace", "remove", "add", "bytes", "seq", "ts"]))
    if how == "bytes":
        raw = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(raw)))
            edit = draw(st.sampled_from(["cut", "flip", "insert"]))
            if edit == "cut":
                del raw[at:]
            elif edit == "flip" and at < len(raw):
                raw[at] ^= draw(st.integers(1, 255))
            else:
                raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        return kind, bytes(raw)
    payload = json.loads(data)
    if how == "seq":  # a jump, a step back, a restart, or something not a seq at all
        payload["seq"] = draw(st.integers(-2, 10**13) | st.sampled_from([True, 1.0, "7"]))
        return kind, json.dumps(payload).encode()
    if how == "ts":  # any instant, in any offset, or text that only looks like one
        when = draw(st.datetimes(timezones=st.timezones()))
        payload["ts"] = draw(st.sampled_from([when.isoformat(), when.isoformat()[:19],
                                              f"{when.isoformat()}Z"]))
        return kind, json.dumps(payload).encode()
    path = draw(st.sampled_from(_paths(payload)))
    *parents, last = path
    parent = payload
    for key in parents:
        parent = parent[key]
    if how == "replace":
        parent[last] = draw(JSON_VALUES)
    elif how == "remove":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    else:
        parent.append(draw(JSON_VALUES))
    return kind, json.dumps(payload).encode()
