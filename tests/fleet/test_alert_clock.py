"""The alert engine times signals by the fleet's clock, never the device's.

What the engine is fed here is what the ingest hands it: payloads encoded and decoded by
the wire contract, in seq order, stamped by a device whose clock is 8 hours off.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent.contract import Kind
from fleet.checks.scheduler import Unanswered
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertState
from tests.fleet.alert_helpers import World, build_world, payload

FAST = timedelta(hours=8)
BAD = {"cameras": {"ok": False, "reason": "camera_missing", "devices": []}}
GOOD = {"cameras": {"ok": True, "devices": [{"id": "cam0", "ok": True}]}}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def _send(world: World, kind: Kind, skew: timedelta = FAST, **fields: object) -> None:
    world.seq += 1
    body = payload(kind, "rural-1", world.clock() + skew, world.seq, **fields)
    getattr(world.engine, f"on_{kind.value}")("rural-1", body)


def _alerts(world: World, rule: str) -> list[Alert]:
    with session_scope(world.sessions) as session:
        found = world.engine.query(session, rule=rule, include_pending=True)
        session.expunge_all()
        return found


def test_a_fast_clock_neither_freezes_tickets_nor_outlives_being_set_right(
    world: World,
) -> None:
    _send(world, Kind.TELEMETRY, interval=30, sections=BAD)
    [camera] = _alerts(world, "camera_missing")
    assert camera.last_seen_at == world.clock()  # the fleet's time, not 8 h ahead
    # NTP sets the clock right: its next reports are 8 h "older" and still count.
    world.tick_after(30)
    _send(world, Kind.TELEMETRY, skew=timedelta(0), interval=30, sections=GOOD)
    [camera] = _alerts(world, "camera_missing")
    assert camera.clear_since == world.clock()
    world.tick_after(61)
    _send(world, Kind.TELEMETRY, skew=timedelta(0), interval=30, sections=GOOD)
    assert _alerts(world, "camera_missing")[0].state is AlertState.RESOLVED

    # Silent on fleet time, cleared on fleet time by a device 8 h slow.
    world.engine.device_silent("rural-1")
    [silent] = _alerts(world, "device_silent")
    raised = world.clock()
    assert silent.last_seen_at == raised
    world.tick_after(5)
    _send(world, Kind.TELEMETRY, skew=-FAST, interval=30, sections=GOOD)
    [silent] = _alerts(world, "device_silent")
    assert (silent.state, silent.clear_since) == (AlertState.FIRING, world.clock())


def test_only_a_new_connection_answers_for_a_missed_check(world: World) -> None:
    _send(world, Kind.STATUS, state="online", session=3, agent_version="0.1.0")
    run = Unanswered("req-1", world.lesson_id, "rural-1", "recheck", final=True, timeout_s=60)
    world.engine.unanswered([run], lambda _: True)
    world.tick_after(1)
    [missed] = _alerts(world, "check_no_answer")
    assert missed.state is AlertState.FIRING
    # The same connection's retained birth, redelivered when the fleet resubscribes,
    # stamped 8 h "later" by the device: not a new connection.
    world.clock.advance(seconds=30)
    _send(world, Kind.STATUS, state="online", session=3, agent_version="0.1.0")
    world.tick_after(1)
    assert _alerts(world, "check_no_answer")[0].clear_since is None
    # A birth of a new session after the missed check, stamped 8 h "earlier" by the
    # device: it can answer again, from the moment the fleet heard it.
    born = world.clock()
    _send(world, Kind.STATUS, skew=-FAST, state="online", session=4, agent_version="0.1.0")
    assert _alerts(world, "check_no_answer")[0].clear_since == born


def test_a_reinstalled_agent_counting_from_one_again_is_heard(world: World) -> None:
    """A reinstalled agent starts its sessions and seqs at 1 again: its reports are news,
    not late fills behind the old installation's seqs."""
    world.seq = 500
    _send(world, Kind.STATUS, skew=timedelta(0), state="online", session=7,
          agent_version="0.1.0")
    _send(world, Kind.TELEMETRY, skew=timedelta(0), interval=30, sections=GOOD)
    world.seq = 0  # the new installation
    world.tick_after(60)
    _send(world, Kind.STATUS, skew=timedelta(0), state="online", session=1,
          agent_version="0.1.0")
    _send(world, Kind.TELEMETRY, skew=timedelta(0), interval=30, sections=BAD)
    assert [a.rule for a in _alerts(world, "camera_missing")] == ["camera_missing"]
    assert world.engine.late_ignored == 0
