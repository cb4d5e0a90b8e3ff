"""Silence judged on the shared device states: two processes each hear every other message
of a device (Mosquitto's round-robin); neither calls it silent while the other heard it,
and both do once nobody has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.contract import Kind
from fleet.db.base import SessionFactory
from fleet.liveness import ever_heard, silent_devices
from fleet.state import DeviceStates
from tests.clock import ManualClock
from tests.fleet.ingest_helpers import inventory_db, status, telemetry
from tests.fleet.test_state import feed

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
LAG = timedelta(seconds=10)  # two flush periods


def _silent(sessions: SessionFactory, states: DeviceStates, now: datetime) -> list[str]:
    local = {d: s.interval for d in states.stale(now) if (s := states.get(d)) is not None}
    return silent_devices(sessions, local, now, states.stale_intervals, LAG)


def test_a_device_one_process_hears_less_of_is_not_silent_while_the_other_hears_it(
    tmp_path: Path,
) -> None:
    sessions = inventory_db(tmp_path)
    clock = ManualClock(T0)
    a, b = DeviceStates(sessions, clock=clock), DeviceStates(sessions, clock=clock)
    assert not ever_heard(sessions, "dev-a")
    for states in (a, b):  # the retained birth reaches every process
        feed(states, Kind.STATUS, status("dev-a", "online", 1, 0))
    for seq in range(1, 13):  # 15 s interval: three minutes, one message in two each
        clock.advance(seconds=15)
        feed(a if seq % 2 else b, Kind.TELEMETRY, telemetry("dev-a", seq, when=clock()))
        if seq <= 2:
            a.flush()  # a stops flushing: b's flushes alone keep the row fresh
        b.flush()
    # a last heard the device at seq 11, b at 12; now a hears nothing more for a while.
    clock.advance(seconds=40)
    assert a.stale(clock()) == ["dev-a"], "a's own view: silent for over 3 intervals"
    assert _silent(sessions, a, clock()) == [], "b heard it 40 s ago: not silent"
    assert ever_heard(sessions, "dev-a")

    clock.advance(seconds=20)  # 60 s since anyone heard it: 3 intervals + the lag passed
    assert _silent(sessions, a, clock()) == ["dev-a"]
    assert _silent(sessions, b, clock()) == ["dev-a"]
