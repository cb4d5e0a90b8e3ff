"""An agent with simulated hardware against a real Mosquitto: what the fleet sees."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from agent.compat import UTC
from agent.contract import EventType, Kind, decode, format_ts, parse_topic
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams
from agent.spool import Spool
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber, make_config, running_agent


def _is(kind: Kind, **fields: object) -> object:
    def pred(m: tuple[str, dict[str, object], bool]) -> bool:
        return m[0].endswith(f"/{kind.value}") and all(m[1].get(k) == v for k, v in fields.items())
    return pred


def test_birth_telemetry_and_clean_offline(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url)
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/+/#"])
    with running_agent(cfg) as agent:
        (topic, birth, _), = sub.wait_for(_is(Kind.STATUS, state="online"))
        assert parse_topic(PREFIX, topic) == ("room-1", Kind.STATUS)
        decode("room-1", Kind.STATUS, _raw(birth))
        assert birth["session"] == agent.link.session
        assert {d["id"] for d in birth["inventory"]["cameras"]}, "birth lists the cameras"
        assert birth["interval"] == 1
        telemetry = [m[1] for m in sub.wait_for(_is(Kind.TELEMETRY), count=3)]
    for t in telemetry:
        decode("room-1", Kind.TELEMETRY, _raw(t))
        assert set(t["sections"]) >= {"system", "cameras", "microphones", "network"}
        assert t["interval"] == 1
    seqs = [t["seq"] for t in telemetry]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    (_, offline, _), = sub.wait_for(_is(Kind.STATUS, state="offline"))
    assert offline["session"] == birth["session"], "clean stop says offline for its session"
    sub.close()

    # A newcomer sees the retained status: the agent is offline.
    late = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/status"])
    (_, retained, was_retained), = late.wait_for(lambda m: True)
    assert was_retained and retained["state"] == "offline"
    late.close()


def test_unplugged_camera_is_an_event_at_once(broker: Mosquitto, tmp_path: Path) -> None:
    hardware = SimulatedHardware(poll_s=0.1)
    camera = hardware.cameras()[0].id
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/event"])
    with running_agent(cfg, hardware=hardware):
        hardware.apply(Fault("camera_unplugged", device=camera))
        (_, event, _), = sub.wait_for(_is(Kind.EVENT, type=EventType.DEVICE_REMOVED.value))
    decode("room-1", Kind.EVENT, _raw(event))
    assert event["entity"] == f"camera:{camera}"
    assert event["message_zh"] and event["message_en"]
    sub.close()


def test_spool_drops_are_counted_and_reported(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url, agent={"spool_max_records": 10})
    # 30 records left from a long outage, more than this spool may keep.
    old = Spool(cfg.agent.state_dir / "spool.sqlite", max_records=1000)
    for _ in range(30):
        old.append(Kind.TELEMETRY, lambda seq: {"seq": seq, "stale": True})
    old.close()
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    with running_agent(cfg):
        (_, event, _), = sub.wait_for(_is(Kind.EVENT, type=EventType.SPOOL_DROPPED.value))
        sub.wait_for(
            lambda m: m[0].endswith("/telemetry") and "spool" in m[1]
            and m[1]["spool"]["dropped_total"] >= 20)
    decode("room-1", Kind.EVENT, _raw(event))
    assert event["detail"]["dropped"] >= 20, "the oldest went first, and were counted"
    assert event["message_zh"] and event["message_en"]
    stale = sorted(m[1]["seq"] for m in sub.messages if m[1].get("stale"))
    assert stale == list(range(stale[0], 31)) and stale[0] > 20
    sub.close()


def _raw(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


def test_the_injected_clock_stamps_everything(broker: Mosquitto, tmp_path: Path) -> None:
    when = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    with running_agent(cfg, clock=lambda: when) as agent:
        (_, birth, _), = sub.wait_for(_is(Kind.STATUS, state="online"))
        (_, telemetry, _), = sub.wait_for(_is(Kind.TELEMETRY))
        check = agent.runner.check(CheckParams(bandwidth_url="http://fleet.example/bw"))
        assert isinstance(agent.hardware, SimulatedHardware)
        assert agent.hardware.elapsed() == 0, "the hardware runs on the agent's clock"
    (_, offline, _), = sub.wait_for(_is(Kind.STATUS, state="offline"))
    stamp = format_ts(when)
    assert [birth["ts"], telemetry["ts"], offline["ts"]] == [stamp] * 3
    assert check.probes["bandwidth"]["measured_at"] == stamp
    sub.close()
