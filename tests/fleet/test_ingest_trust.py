"""What the ingest believes of a device's seq and ts, against a real Mosquitto and real
agents on simulated classrooms: refusals counted under their true reason, a forged jump
or a stamp from the future kept out of the state, and what a real agent does after a
restart, a long outage or a reinstall accepted in order."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.app import Agent
from agent.contract import DEFAULT_PREFIX, MAX_PAYLOAD_BYTES, Kind, encode
from fleet.broker import Mosquitto, free_port
from fleet.db.base import SessionFactory
from fleet.state import DeviceStates
from tests.agent.agentkit import make_config, running_agent
from tests.clock import ManualClock
from tests.e2e.world import sample_value
from tests.fleet.ingest_helpers import (
    DeviceClient,
    Recorder,
    inventory_db,
    make_ingest,
    telemetry,
    wait_until,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
pytestmark = pytest.mark.usefixtures("ingests_closed")


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    return inventory_db(tmp_path)


def _sent(recorder: Recorder) -> list[int]:
    """The seqs the sinks were given, in the order given (status carries none of its own)."""
    return [int(p["seq"]) for kind, _, p in list(recorder.messages) if kind != "status"]


def test_every_refusal_is_counted_under_its_own_reason(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    clock = ManualClock(T0)
    recorder = Recorder()
    ingest = make_ingest(broker, sessions, [recorder], clock=clock)
    dev = DeviceClient(broker, "dev-a")
    good = telemetry("dev-a", 1, when=T0)
    too_large = encode(good)[:-1] + b' ' * MAX_PAYLOAD_BYTES + b'}'
    sends: list[tuple[str, str, bytes]] = [
        # The device is judged from the topic before the payload is read at all.
        ("unknown-device", "ghost-1", b"{not json"),
        ("unknown-device", "ghost-1", too_large),
        ("unknown-device", "dev-off", encode(telemetry("dev-off", 1, when=T0))),
        ("bad-device-id", "-bad", encode(telemetry("dev-a", 1, when=T0))),
        ("too-large", "dev-a", too_large),
        ("bad-json", "dev-a", b"{not json"),
        ("bad-json", "dev-a", b"[1, 2]"),
        ("bad-schema", "dev-a", encode(good | {"schema": 3})),
        ("device-mismatch", "dev-a", encode(telemetry("dev-b", 1, when=T0))),
        ("bad-ts", "dev-a", encode(good | {"ts": "yesterday"})),
        ("missing-field", "dev-a", encode({k: v for k, v in good.items() if k != "sections"})),
        ("bad-seq", "dev-a", encode(good | {"seq": -1})),
    ]
    for _, device_id, data in sends:
        dev.send_raw(f"{DEFAULT_PREFIX}/dev/{device_id}/telemetry", data)
    # Valid, but stamped where no real clock is: suspicious, not refused.
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1, when=datetime(3000, 1, 1, tzinfo=UTC)))
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1, when=datetime(1970, 1, 1, tzinfo=UTC)))
    dev.send(Kind.TELEMETRY, good)
    assert wait_until(lambda: len(recorder.messages) == 1)
    validator = ingest.dispatcher.validator
    expected: dict[str, int] = {}
    for reason, _, _ in sends:
        expected[reason] = expected.get(reason, 0) + 1
    assert validator.refused == expected
    assert validator.suspicious == {"ts-ahead": 1, "ts-behind": 1}
    assert recorder.messages == [("telemetry", "dev-a", good)]
    samples = list(ingest.samples())
    assert sample_value(samples, "syncclass_ingest_refused_total", reason="unknown-device") == 3
    assert sample_value(samples, "syncclass_ingest_suspicious_total", reason="ts-ahead") == 1
    dev.close()


def test_a_forged_seq_jump_does_not_blind_the_ingest_to_the_real_agent(
    broker: Mosquitto, sessions: SessionFactory, tmp_path: Path
) -> None:
    states = DeviceStates(sessions)
    recorder = Recorder()
    ingest = make_ingest(broker, sessions, [states, recorder], gate=states)
    with running_agent(make_config(tmp_path, broker.url, device_id="dev-a")) as agent:
        assert wait_until(lambda: len(_sent(recorder)) >= 2)
        # From the device's own topic, a valid message with a seq far ahead of the agent.
        forger = DeviceClient(broker, "dev-a-forger")
        forger.send_raw(f"{DEFAULT_PREFIX}/dev/dev-a/telemetry",
                        encode(telemetry("dev-a", 1_000_000)))
        assert wait_until(lambda: ingest.dispatcher.validator.suspicious["seq-jump"] == 1)
        after = agent.spool.last_seq
        assert wait_until(lambda: max(_sent(recorder)) >= after + 3, timeout=15)
        forger.close()
    sent = _sent(recorder)
    assert 1_000_000 not in sent
    assert sent == list(range(sent[0], sent[-1] + 1))  # every real one, in order, once
    snap = states.get("dev-a")
    assert snap is not None
    assert snap.last_seq == sent[-1] and snap.seq_duplicates == 0


def _run_offline(config_dir: Path, device_id: str, clock: ManualClock, records: int) -> int:
    """The agent of ``device_id`` running with its broker unreachable until ``records``
    messages wait in its spool; returns its last seq."""
    config = make_config(config_dir, f"mqtt://127.0.0.1:{free_port()}", device_id=device_id)
    agent = Agent(config, clock=clock)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(agent.spool) >= records, timeout=records + 15)
        return agent.spool.last_seq
    finally:
        agent.stop()
        thread.join(10)


def test_a_restarted_agent_replays_hours_of_spool_in_order_and_none_is_doubted(
    broker: Mosquitto, sessions: SessionFactory, tmp_path: Path
) -> None:
    # seq_jump far below what the outage spools: the replay passes on the birth's word.
    clock = ManualClock(T0)
    states = DeviceStates(sessions, clock=clock, seq_jump=2)
    recorder = Recorder()
    ingest = make_ingest(broker, sessions, [states, recorder], gate=states, clock=clock)
    config = make_config(tmp_path, broker.url, device_id="dev-a")
    with running_agent(config, clock=clock) as agent:
        assert wait_until(lambda: len(_sent(recorder)) >= 2)
        first_session = agent.link.session
    clock.advance(hours=1)  # the classroom's uplink goes down
    offline_last = _run_offline(tmp_path, "dev-a", clock, records=6)
    clock.advance(hours=5)  # back five hours later: the spool is hours old
    with running_agent(config, clock=clock) as agent:
        assert agent.link.session > first_session
        assert wait_until(lambda: max(_sent(recorder)) >= offline_last + 2, timeout=15)
    sent = _sent(recorder)
    assert sent == list(range(1, sent[-1] + 1))  # in order, none lost, none twice
    replayed = [p for kind, _, p in recorder.messages
                if kind != "status" and p["seq"] == offline_last]
    assert replayed and replayed[0]["ts"].startswith("2026-03-02T02:")  # five hours old
    assert ingest.dispatcher.validator.suspicious == {}
    assert ingest.dispatcher.validator.refused == {}
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (sent[-1], 0, 0)
    assert states.seq_restarts == 0


def test_a_reinstalled_agent_restarts_the_cursor(
    broker: Mosquitto, sessions: SessionFactory, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    states = DeviceStates(sessions, clock=clock)
    recorder = Recorder()
    make_ingest(broker, sessions, [states, recorder], gate=states, clock=clock)
    config = make_config(tmp_path, broker.url, device_id="dev-a")
    with running_agent(config, clock=clock):
        assert wait_until(lambda: len(_sent(recorder)) >= 5)
    before = len(_sent(recorder))
    # The mini-PC is re-imaged: spool, seq and session all start again from nothing.
    shutil.rmtree(config.agent.state_dir)
    clock.advance(minutes=30)
    with running_agent(config, clock=clock) as agent:
        assert agent.link.session <= 2  # its session count started again too
        assert wait_until(lambda: len(_sent(recorder)) >= before + 3, timeout=15)
    again = _sent(recorder)[before:]
    assert again == list(range(1, len(again) + 1))
    # Its clean shutdown's "offline" is handled after the telemetry counted above.
    assert wait_until(lambda: (snap := states.get("dev-a")) is not None and not snap.online)
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.online, snap.last_seq, snap.seq_duplicates) == (False, again[-1], 0)
    assert states.seq_restarts == 1


def test_a_jump_the_fleet_missed_is_believed_after_consecutive_seqs(
    broker: Mosquitto, sessions: SessionFactory, tmp_path: Path
) -> None:
    # The fleet's ingest is away while the agent keeps reporting (longer than seq_jump):
    # when it is back the agent is far beyond its cursor, on the same session.
    states = DeviceStates(sessions, seq_jump=2, seq_confirm=3)
    first = Recorder()
    ingest = make_ingest(broker, sessions, [states, first], gate=states)
    with running_agent(make_config(tmp_path, broker.url, device_id="dev-a")) as agent:
        assert wait_until(lambda: len(_sent(first)) >= 2)
        ingest.close()
        seen = states.get("dev-a")
        assert seen is not None
        assert wait_until(lambda: agent.spool.last_seq > seen.last_seq + 5
                          and len(agent.spool) == 0, timeout=20)
        back = Recorder()
        # Another session (its own expired, or another process's): what the broker queued
        # for the first is not delivered to it.
        ingest = make_ingest(broker, sessions, [states, back], gate=states,
                             instance="another")
        assert wait_until(lambda: len(_sent(back)) >= 5, timeout=15)
    sent = _sent(back)
    assert sent == list(range(sent[0], sent[-1] + 1))  # the held ones released in order
    assert ingest.dispatcher.validator.suspicious == {"seq-jump": 3}
    snap = states.get("dev-a")
    assert snap is not None and snap.last_seq == sent[-1]
    assert sample_value(states.samples(), "syncclass_seq_jumps_adopted_total") == 1
