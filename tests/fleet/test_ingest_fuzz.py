"""Fuzzing the ingest: streams of the real agent's messages, changed a little or not at
all, under the device's own and other topics.  Whatever arrives, the ingest never raises,
no sink fails, and every message is counted once: refused or suspicious by reason, a
duplicate, or dispatched.  What it accepted can be flushed and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.contract import DEFAULT_PREFIX, Kind
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory
from fleet.ingest import Dispatcher, Validator
from fleet.state import DeviceStates
from tests.agent_payloads import AGENT_DEVICE, near_valid
from tests.fleet.ingest_helpers import (
    DeviceClient,
    Recorder,
    close_ingests,
    inventory_db,
    make_ingest,
    wait_until,
)
from tests.fuzzing import fuzz_settings

DEVICES = [AGENT_DEVICE, AGENT_DEVICE, AGENT_DEVICE, "dev-b", "dev-off", "ghost-1"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> SessionFactory:
    return inventory_db(tmp_path_factory.mktemp("ingest-fuzz"))


def _counts(dispatcher: Dispatcher) -> tuple[int, int, int, int]:
    v = dispatcher.validator
    return (sum(v.refused.values()), sum(v.suspicious.values()), dispatcher.duplicates,
            sum(dispatcher.accepted.values()))


@st.composite
def streams(draw: st.DrawFn, seeds: list[tuple[Kind, bytes]]) -> list[tuple[str, bytes]]:
    messages = []
    for _ in range(draw(st.integers(1, 8))):
        kind, data = draw(st.sampled_from(seeds) | near_valid(seeds))
        device = draw(st.sampled_from(DEVICES))
        messages.append((f"{DEFAULT_PREFIX}/dev/{device}/{kind.value}", data))
    return messages


@pytest.mark.fuzz
@fuzz_settings
@given(data=st.data())
def test_any_stream_of_near_valid_messages_is_counted_and_never_crashes_the_ingest(
    stored: SessionFactory, agent_payloads: list[tuple[Kind, bytes]], data: st.DataObject
) -> None:
    states = DeviceStates(stored)
    recorder = Recorder()
    validator = Validator(DEFAULT_PREFIX, lambda: {AGENT_DEVICE, "dev-b"})
    dispatcher = Dispatcher(validator, [states, recorder], gate=states)
    for topic, raw in data.draw(streams(agent_payloads)):
        before = _counts(dispatcher)
        dispatcher.handle(topic, raw)
        grown = [after - was for after, was in zip(_counts(dispatcher), before, strict=True)]
        # Exactly one outcome, counted once (an adopted jump releases several at once).
        assert sum(1 for g in grown if g) == 1, grown
        assert all(g in (0, 1) for g in grown[:3])
    assert dispatcher.sink_errors == {}
    states.flush()
    for snap in states.all():
        assert snap.device_id in (AGENT_DEVICE, "dev-b")
    assert len(recorder.messages) == sum(dispatcher.accepted.values())


def test_what_once_killed_the_dispatcher_is_refused_and_the_ingest_goes_on(
    broker: Mosquitto, tmp_path: Path, agent_payloads: list[tuple[Kind, bytes]]
) -> None:
    sessions = inventory_db(tmp_path)
    recorder = Recorder()
    ingest = make_ingest(broker, sessions, [recorder])
    dev = DeviceClient(broker, AGENT_DEVICE)
    try:
        dev.send_raw(dev.topic(Kind.TELEMETRY), b"[" * 60_000)
        dev.send_raw(dev.topic(Kind.EVENT), b'{"seq": ' + b"9" * 5_000 + b"}")
        kind, real = next((k, r) for k, r in agent_payloads if k is Kind.TELEMETRY)
        dev.send_raw(dev.topic(kind), real)
        assert wait_until(lambda: len(recorder.messages) == 1)
    finally:
        dev.close()
        close_ingests()
    assert ingest.dispatcher.validator.refused == {"bad-json": 2}
