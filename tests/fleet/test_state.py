"""Device state: sessions, sequence numbers, persistence and staleness."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.contract import Kind, envelope, format_ts
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Device, DeviceSeqMark, DeviceState
from fleet.state import DeviceStates, SeqTracker
from tests.clock import ManualClock
from tests.e2e.world import sample_value
from tests.fleet.ingest_helpers import inventory_db, status, telemetry
from tests.fleet.pg import fresh_database

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    return inventory_db(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionFactory]:
    """The inventory on each database the flush writes to with its own bulk statements."""
    url = None
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres"), f"state_{uuid.uuid4().hex[:8]}")
    factory = inventory_db(tmp_path, url)
    yield factory
    engine = factory.kw["bind"]
    engine.dispose()


def feed(states: DeviceStates, kind: Kind, payload: dict[str, object]) -> bool:
    """What the dispatcher does: the gate first, then the sink if admitted."""
    device_id = str(payload["device_id"])
    released = states.admit(device_id, kind, dict(payload)).release
    for got, body in released:
        if got is Kind.STATUS:
            states.on_status(device_id, dict(body))
        elif got is Kind.TELEMETRY:
            states.on_telemetry(device_id, dict(body))
    return bool(released)


def online(states: DeviceStates, device_id: str = "dev-a") -> tuple[bool, int]:
    snap = states.get(device_id)
    assert snap is not None
    return snap.online, snap.session


def test_status_of_an_older_session_never_overrides_the_current_one(
    sessions: SessionFactory,
) -> None:
    states = DeviceStates(sessions)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0))
    feed(states, Kind.STATUS, status("dev-a", "offline", 1, 0))  # Last Will of session 1
    assert online(states) == (False, 1)
    feed(states, Kind.STATUS, status("dev-a", "online", 2, 1))
    feed(states, Kind.STATUS, status("dev-a", "offline", 1, 0))  # late duplicate of that Will
    assert online(states) == (True, 2)
    assert states.stale_status_ignored == 1
    feed(states, Kind.STATUS, status("dev-a", "offline", 3, 0))  # a newer session's Will
    assert online(states) == (False, 3)
    # Retained status redelivered on every reconnect: admitted, changes nothing.
    assert feed(states, Kind.STATUS, status("dev-a", "offline", 3, 0))
    assert online(states) == (False, 3)


def test_seq_tracker_counts_gaps_fills_them_late_and_rejects_duplicates() -> None:
    seq = SeqTracker()
    assert [seq.observe(n) for n in (10, 11, 14)] == [True, True, True]
    assert (seq.high, seq.gaps, seq.missing) == (14, 2, {12, 13})
    assert seq.observe(12)  # replayed from the agent's spool: fills a gap
    assert (seq.gaps, seq.duplicates) == (1, 0)
    assert not seq.observe(12)
    assert not seq.observe(14)
    assert not seq.observe(3)  # far below anything missing
    assert (seq.gaps, seq.duplicates) == (1, 3)


def test_a_new_session_with_a_lower_seq_restarts_tracking(sessions: SessionFactory) -> None:
    states = DeviceStates(sessions)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 500))
    # Reinstalled agent: its counter starts again; not 499 duplicates in a row.
    feed(states, Kind.STATUS, status("dev-a", "online", 2, 0))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 1))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 2))
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (2, 0, 0)
    assert states.seq_restarts == 1
    # A new session whose birth seq is above the highest is a normal reconnect.
    feed(states, Kind.STATUS, status("dev-a", "online", 3, 3))
    assert not feed(states, Kind.TELEMETRY, telemetry("dev-a", 2))
    assert states.seq_restarts == 1


def test_replayed_older_telemetry_does_not_replace_the_latest(sessions: SessionFactory) -> None:
    states = DeviceStates(sessions)
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 5, when=T0 + timedelta(minutes=5)))
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 3, when=T0, sections={"system": {}}))
    snap = states.get("dev-a")
    assert snap is not None
    assert snap.telemetry["ts"] == format_ts(T0 + timedelta(minutes=5))
    assert "cameras" in snap.telemetry["sections"]


def test_flush_and_reload_keep_the_last_state(stored: SessionFactory) -> None:
    clock = ManualClock(T0)
    states = DeviceStates(stored, clock=clock)
    feed(states, Kind.STATUS, status("dev-a", "online", 4, 0, interval=30,
                                     inventory={"cameras": [{"id": "cam0"}]}))
    for n in (1, 2, 4):
        feed(states, Kind.TELEMETRY, telemetry("dev-a", n, when=T0))
    feed(states, Kind.STATUS, status("dev-b", "offline", 1, 0))
    assert states.flush() == 2
    assert states.flush() == 0  # nothing changed since

    restarted = DeviceStates(stored, clock=clock)
    snap = restarted.get("dev-a")
    assert snap is not None
    assert (snap.online, snap.session, snap.last_seq, snap.seq_gaps) == (True, 4, 4, 1)
    assert snap.inventory == {"cameras": [{"id": "cam0"}]}
    assert snap.telemetry["sections"]["system"]["cpu_pct"] == 12.5
    assert snap.telemetry_at == T0
    assert snap.last_seen == T0
    assert snap.status_at == T0  # when the fleet learnt it online, kept across restarts
    assert snap.interval == 15
    assert [s.device_id for s in restarted.all()] == ["dev-a", "dev-b"]
    # Seqs up to the flushed one count as seen; the next one is new.
    assert not feed(restarted, Kind.TELEMETRY, telemetry("dev-a", 4))
    assert feed(restarted, Kind.TELEMETRY, telemetry("dev-a", 5))


def test_a_later_flush_updates_the_row_and_the_newest_state_wins(
    stored: SessionFactory,
) -> None:
    clock = ManualClock(T0)
    # Two processes: each its own identity (client id) for the seqs it handled itself.
    mine, other = DeviceStates(stored, clock=clock), DeviceStates(stored, clock=clock,
                                                                  holder="other")
    feed(mine, Kind.STATUS, status("dev-a", "online", 1, 0,
                                   inventory={"cameras": [{"id": "cam0"}]}))
    feed(mine, Kind.TELEMETRY, telemetry("dev-a", 1, when=T0))
    assert mine.flush() == 1
    # Another process heard only an older telemetry of the device's previous session.
    clock.set(T0 + timedelta(seconds=30))
    feed(other, Kind.TELEMETRY, telemetry("dev-a", 2, when=clock(),
                                          sections={"system": {"cpu_pct": 50.0}}))
    clock.set(T0 + timedelta(minutes=1))
    feed(mine, Kind.TELEMETRY, telemetry("dev-a", 3, when=clock(),
                                         sections={"system": {"cpu_pct": 99.0}}))
    feed(mine, Kind.STATUS, status("dev-a", "online", 2, 4, inventory={"cameras": []}))
    assert mine.flush() == 1
    assert other.flush() == 1

    snap = DeviceStates(stored, clock=clock).get("dev-a")
    assert snap is not None
    assert (snap.online, snap.session, snap.last_seq) == (True, 2, 3)
    assert snap.inventory == {"cameras": []}
    assert snap.telemetry["sections"] == {"system": {"cpu_pct": 99.0}}
    assert (snap.telemetry_at, snap.last_seen) == (clock(), clock())


def test_flush_keeps_a_newer_session_written_by_another_fleet_process(
    stored: SessionFactory,
) -> None:
    mine, other = DeviceStates(stored), DeviceStates(stored)
    feed(other, Kind.STATUS, status("dev-a", "online", 9, 0))
    other.flush()
    feed(mine, Kind.STATUS, status("dev-a", "offline", 8, 0))
    mine.flush()
    with session_scope(stored) as s:
        row = s.get(DeviceState, "dev-a")
        assert row is not None
        assert (row.online, row.session) == (True, 9)


def test_flush_skips_a_device_removed_from_the_inventory(stored: SessionFactory) -> None:
    states = DeviceStates(stored)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0))
    feed(states, Kind.STATUS, status("dev-b", "online", 1, 0))
    with session_scope(stored) as s:
        s.delete(s.get(Device, "dev-b"))
    assert states.flush() == 1


def test_close_writes_what_changed_since_the_last_cut(sessions: SessionFactory) -> None:
    def stored_session(device_id: str) -> int | None:
        with session_scope(sessions) as s:
            row = s.get(DeviceState, device_id)
            return None if row is None else row.session

    states = DeviceStates(sessions)
    feed(states, Kind.STATUS, status("dev-a", "online", 3, 0))
    states.cut()()
    feed(states, Kind.STATUS, status("dev-b", "online", 5, 0))
    assert (stored_session("dev-a"), stored_session("dev-b")) == (3, None)
    states.close()
    assert stored_session("dev-b") == 5


def test_snapshots_are_copies_a_caller_cannot_change_the_state_through(
    sessions: SessionFactory,
) -> None:
    states = DeviceStates(sessions)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0, inventory={"cameras": []}))
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 1))
    snap = states.get("dev-a")
    assert snap is not None
    snap.telemetry["sections"]["system"]["cpu_pct"] = -1.0
    snap.inventory["cameras"].append({"id": "fake"})
    (again,) = states.all()
    assert again.telemetry["sections"]["system"]["cpu_pct"] == 12.5
    assert again.inventory == {"cameras": []}


def test_stale_devices_are_online_ones_silent_for_three_intervals(
    sessions: SessionFactory,
) -> None:
    clock = ManualClock(T0)
    states = DeviceStates(sessions, clock=clock)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0, interval=10))
    feed(states, Kind.STATUS, status("dev-b", "offline", 1, 0))
    assert states.stale(T0 + timedelta(seconds=30)) == []
    assert states.stale(T0 + timedelta(seconds=31)) == ["dev-a"]
    clock.set(T0 + timedelta(seconds=25))
    states.admit("dev-a", Kind.EVENT, envelope("dev-a", 1) | {"type": "device_added"})
    assert states.stale(T0 + timedelta(seconds=31)) == []
    clock.set(T0 + timedelta(seconds=100))
    samples = {s.name: s.value for s in states.samples()}
    assert samples["syncclass_devices_online"] == 1
    assert samples["syncclass_devices_offline"] == 1
    assert samples["syncclass_devices_stale"] == 1


def test_a_seq_far_beyond_the_line_is_held_and_dropped_when_the_line_goes_on(
    sessions: SessionFactory,
) -> None:
    states = DeviceStates(sessions, seq_jump=1000)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 500))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 501))
    forged = telemetry("dev-a", 1_000_000, sections={"cameras": {"ok": True, "devices": []}})
    admission = states.admit("dev-a", Kind.TELEMETRY, forged)
    assert (admission.release, admission.withheld) == ((), "seq-jump")
    assert "1000000" in admission.detail and "502" in admission.detail
    # The agent's next message continues its line: admitted, and the jump is forgotten.
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 502))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 503))
    assert not feed(states, Kind.TELEMETRY, telemetry("dev-a", 1_000_001))  # held anew
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (503, 0, 0)
    assert "microphones" in snap.telemetry["sections"]  # the agent's, not the forgery's


def test_a_jump_confirmed_by_consecutive_seqs_is_believed_and_nothing_is_lost(
    sessions: SessionFactory,
) -> None:
    # The fleet was down for days while the agent kept reporting: when it is back, the
    # agent is far beyond the stored cursor and nothing on the old line will ever come.
    states = DeviceStates(sessions, seq_jump=100, seq_confirm=3)
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 10))
    released = []
    for seq in (20_000, 20_001, 20_001, 20_002, 20_003):
        released.append([p["seq"] for _, p in
                         states.admit("dev-a", Kind.TELEMETRY, telemetry("dev-a", seq)).release])
    # Held (one resent copy a duplicate), then released in order with the confirming one.
    assert released == [[], [], [], [], [20_000, 20_001, 20_002, 20_003]]
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 20_004))
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (20_004, 0, 1)
    samples = {s.name: s.value for s in states.samples()}
    assert samples["syncclass_seq_jumps_adopted_total"] == 1


def test_a_new_session_rebases_the_cursor_on_the_birth_seq(sessions: SessionFactory) -> None:
    states = DeviceStates(sessions, seq_jump=5)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 0))
    for seq in (1, 2, 3):
        assert feed(states, Kind.TELEMETRY, telemetry("dev-a", seq))
    # Hours offline: the birth says 300 seqs were handed out, far more than seq_jump.
    feed(states, Kind.STATUS, status("dev-a", "online", 40, 300))
    assert not feed(states, Kind.TELEMETRY, telemetry("dev-a", 3))  # resent after a lost ack
    assert all(feed(states, Kind.TELEMETRY, telemetry("dev-a", seq)) for seq in range(4, 306))
    assert not feed(states, Kind.TELEMETRY, telemetry("dev-a", 400))  # beyond: held
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (305, 0, 1)
    assert states.seq_restarts == 0


def test_stored_telemetry_follows_the_sequence_not_the_clock(sessions: SessionFactory) -> None:
    states = DeviceStates(sessions)
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 1, when=T0))
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 3, when=T0 + timedelta(seconds=30)))
    # The agent's clock was set back (NTP): the newer message has the older stamp.
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 4, when=T0 + timedelta(seconds=10),
                                           sections={"system": {"cpu_pct": 5.0}}))
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 2, when=T0 + timedelta(seconds=15)))  # fill
    snap = states.get("dev-a")
    assert snap is not None
    assert snap.telemetry["sections"] == {"system": {"cpu_pct": 5.0}}
    assert snap.telemetry["ts"] == format_ts(T0 + timedelta(seconds=10))  # for display


def test_a_stored_stamp_from_the_future_does_not_outrank_real_telemetry(
    stored: SessionFactory,
) -> None:
    # A row poisoned before the ingest judged ts (year 3000) must lose the next flush.
    clock = ManualClock(T0)
    poisoned = DeviceStates(stored, clock=clock)
    feed(poisoned, Kind.TELEMETRY, telemetry("dev-a", 1, when=datetime(3000, 1, 1, tzinfo=UTC),
                                             sections={"cameras": {"ok": True}}))
    poisoned.flush()
    real = DeviceStates(stored, clock=clock)
    feed(real, Kind.TELEMETRY, telemetry("dev-a", 2, when=T0))
    real.flush()
    snap = DeviceStates(stored, clock=clock).get("dev-a")
    assert snap is not None
    assert snap.telemetry_at == T0
    assert "microphones" in snap.telemetry["sections"]


def test_a_reinstalled_agent_is_known_by_its_birth_stamp_across_a_fleet_restart(
    stored: SessionFactory,
) -> None:
    clock = ManualClock(T0 + timedelta(hours=2))
    first = DeviceStates(stored, clock=clock)
    feed(first, Kind.STATUS, status("dev-a", "online", 57, 9000) | {"ts": "2026-11-23T00:00:00Z"})
    assert feed(first, Kind.TELEMETRY, telemetry("dev-a", 9001, when=T0))
    first.flush()
    # Re-imaged: seq and session start again from nothing; its birth is the later one.
    reborn = status("dev-a", "online", 1, 0) | {"ts": "2026-11-23T01:00:00Z"}
    feed(first, Kind.STATUS, reborn)
    assert feed(first, Kind.TELEMETRY, telemetry("dev-a", 1, when=T0 + timedelta(hours=1)))
    # A late Will of the old incarnation, of a lower session than what is stored: ignored.
    feed(first, Kind.STATUS, status("dev-a", "offline", 0, 0))
    assert first.stale_status_ignored == 1
    first.flush()

    restarted = DeviceStates(stored, clock=clock)
    snap = restarted.get("dev-a")
    assert snap is not None
    assert (snap.session, snap.last_seq) == (1, 1)
    # The retained birth is redelivered to the restarted fleet: the current connection.
    feed(restarted, Kind.STATUS, reborn)
    assert restarted.stale_status_ignored == 0
    assert feed(restarted, Kind.TELEMETRY, telemetry("dev-a", 2, when=T0 + timedelta(hours=1)))
    assert restarted.seq_restarts == 0


def test_a_forged_burst_believed_as_a_jump_is_undone_by_the_real_agent(
    sessions: SessionFactory,
) -> None:
    # Someone with the device's credentials sends four consecutive forged seqs between
    # two real messages: the jump is believed, then the agent's own line takes it back.
    states = DeviceStates(sessions, seq_jump=1000, seq_confirm=3)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 500))
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 501))
    forged = {"cameras": {"ok": True, "devices": []}}
    for seq in range(1_000_000, 1_000_004):
        states.admit("dev-a", Kind.TELEMETRY, telemetry("dev-a", seq, sections=forged))
    released = [[p["seq"] for _, p in states.admit(
        "dev-a", Kind.TELEMETRY, telemetry("dev-a", seq)).release] for seq in range(502, 506)]
    assert released == [[], [], [], [502, 503, 504, 505]]
    assert feed(states, Kind.TELEMETRY, telemetry("dev-a", 506))
    snap = states.get("dev-a")
    assert snap is not None
    assert snap.last_seq == 506 and "microphones" in snap.telemetry["sections"]
    assert not feed(states, Kind.TELEMETRY, telemetry("dev-a", 1_000_004))  # held again
    assert sample_value(states.samples(), "syncclass_seq_jumps_adopted_total") == 2


def test_the_device_clock_is_measured_on_live_telemetry_only(sessions: SessionFactory) -> None:
    """Live telemetry (above the birth's seq) measures the device's clock; a spool replay
    (older records, at or below it) does not, and a delayed live message cannot make a
    right clock look slow while a prompt one follows."""
    clock = ManualClock(T0)
    told: list[tuple[str, float, bool]] = []
    states = DeviceStates(sessions, clock=clock, clock_skew_s=120,
                          on_clock=lambda *args: told.append(args))
    fast = timedelta(hours=8)
    feed(states, Kind.STATUS, status("dev-a", "online", 1, 10))
    # Ten hours of spool, replayed after the birth: old stamps, not the clock's fault.
    for seq in (9, 10):
        feed(states, Kind.TELEMETRY, telemetry("dev-a", seq, when=T0 - timedelta(hours=10)))
    assert told == [] and states.clock_offset("dev-a") == 0.0
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 11, when=T0 + fast))
    assert told == [("dev-a", fast.total_seconds(), True)]
    snap = states.get("dev-a")
    assert snap is not None and snap.clock_offset_s == fast.total_seconds()
    assert snap.telemetry_at == T0  # stamped on fleet time, whatever the clock says

    # Set right by NTP and reconnected: a new connection's samples alone count.
    clock.advance(seconds=15)
    feed(states, Kind.STATUS, status("dev-a", "online", 2, 11))
    late = clock() - timedelta(seconds=300)  # a live message that queued for 5 min
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 12, when=late))
    assert told[-1] == ("dev-a", -300.0, True)
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 13, when=clock()))  # prompt: 0 s
    assert told[-1] == ("dev-a", 0.0, False)
    told.clear()
    feed(states, Kind.TELEMETRY, telemetry("dev-a", 14, when=clock()))
    assert told == []  # a right clock staying right is nobody's news


def test_a_restarted_process_keeps_its_own_redeliveries_the_other_process_moved_past(
    stored: SessionFactory,
) -> None:
    """Two processes share a device's messages ($share round-robin); one is killed with
    messages it admitted but never made durable (so never acknowledged), and its
    persistent session delivers them again after its restart.  The shared last_seq the
    other process moved on must not make them duplicates (issue 7: 253 of 841 lost)."""
    clock = ManualClock(T0)
    one = DeviceStates(stored, clock=clock, holder="fleet-1")
    two = DeviceStates(stored, clock=clock, holder="fleet-2")
    birth = status("dev-a", "online", 1, 0)  # retained: the same on every delivery
    for states in (one, two):
        feed(states, Kind.STATUS, birth)
    for seq in (1, 3, 5):
        assert feed(one, Kind.TELEMETRY, telemetry("dev-a", seq, when=T0))
    one.flush()  # durable up to 5 (its PUBACKs may still be lost with it)
    for seq in (7, 9):
        assert feed(one, Kind.TELEMETRY, telemetry("dev-a", seq, when=T0))
    for seq in (2, 4, 6, 8, 10, 12):
        assert feed(two, Kind.TELEMETRY, telemetry("dev-a", seq, when=T0))
    two.flush()
    # SIGKILL: `one` wrote nothing more.  Its restart loads the shared row (last_seq 12).
    restarted = DeviceStates(stored, clock=clock, holder="fleet-1")
    snap = restarted.get("dev-a")
    assert snap is not None and snap.last_seq == 12
    feed(restarted, Kind.STATUS, birth)
    redelivered = [seq for seq in (5, 7, 9) if feed(restarted, Kind.TELEMETRY,
                                                        telemetry("dev-a", seq, when=T0))]
    assert redelivered == [7, 9]  # 5 it had handled and written: a duplicate
    assert feed(restarted, Kind.TELEMETRY, telemetry("dev-a", 11, when=T0))
    assert not feed(restarted, Kind.TELEMETRY, telemetry("dev-a", 9, when=T0))
    # What it handled is its own mark now; the shared row keeps the highest of both.
    restarted.flush()
    again = DeviceStates(stored, clock=clock, holder="fleet-1")
    assert not feed(again, Kind.TELEMETRY, telemetry("dev-a", 11, when=T0))
    with session_scope(stored) as s:
        row = s.get(DeviceState, "dev-a")
        assert row is not None and row.last_seq == 12
        marks = s.execute(select(DeviceSeqMark.holder, DeviceSeqMark.last_seq))
        assert sorted(tuple(mark) for mark in marks) == [("fleet-1", 11), ("fleet-2", 12)]


def test_a_process_back_after_another_heard_a_reinstall_follows_the_new_line(
    stored: SessionFactory,
) -> None:
    clock = ManualClock(T0 + timedelta(hours=2))
    one = DeviceStates(stored, clock=clock, holder="fleet-1")
    feed(one, Kind.STATUS, status("dev-a", "online", 57, 9000) | {"ts": "2026-11-23T00:00:00Z"})
    assert feed(one, Kind.TELEMETRY, telemetry("dev-a", 9001, when=T0))
    one.flush()  # then it stops; its own mark stays at 9001
    two = DeviceStates(stored, clock=clock, holder="fleet-2")
    reborn = status("dev-a", "online", 1, 0) | {"ts": "2026-11-23T01:00:00Z"}
    feed(two, Kind.STATUS, reborn)
    assert feed(two, Kind.TELEMETRY, telemetry("dev-a", 1, when=T0 + timedelta(hours=1)))
    two.flush()
    back = DeviceStates(stored, clock=clock, holder="fleet-1")
    feed(back, Kind.STATUS, reborn)  # retained
    assert not feed(back, Kind.TELEMETRY, telemetry("dev-a", 1, when=T0 + timedelta(hours=1)))
    assert feed(back, Kind.TELEMETRY, telemetry("dev-a", 2, when=T0 + timedelta(hours=1)))
