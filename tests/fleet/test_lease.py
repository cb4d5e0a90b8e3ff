"""The coordinator lease on one SQLite file and on the real PostgreSQL: one holder at a
time, a takeover only after expiry with a new fencing token, and a holder that lost the
lease writes nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import FleetLease, FleetSecret
from fleet.lease import Lease, LeaseConfig, LeaseLost
from tests.clock import ManualClock
from tests.fleet.notify_helpers import two_processes
from tests.waiting import wait_until

BACKENDS = ["sqlite", "postgresql"]
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _leases(backend: str, tmp_path: Path, request: pytest.FixtureRequest
            ) -> tuple[list[SessionFactory], ManualClock, Lease, Lease]:
    factories = two_processes(backend, tmp_path, request, FleetLease, FleetSecret)
    clock = ManualClock(T0)
    config = LeaseConfig(ttl_s=10)
    a = Lease(factories[0], config, holder="a", clock=clock)
    b = Lease(factories[1], config, holder="b", clock=clock)
    return factories, clock, a, b


def _write(sessions: SessionFactory, name: str) -> None:
    with session_scope(sessions) as session:
        session.add(FleetSecret(name=name, value="x"))


def _written(sessions: SessionFactory) -> set[str]:
    with session_scope(sessions) as session:
        return set(session.scalars(select(FleetSecret.name)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_holder_until_expiry_then_a_new_token_fences_the_old(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    factories, clock, a, b = _leases(backend, tmp_path, request)
    assert a.renew() and not b.renew()
    first = a.token
    clock.advance(seconds=9)
    assert a.renew(), "the holder renews before expiry"
    clock.advance(seconds=9)
    assert not b.renew(), "18 s after the first renewal but 9 s after the last: still a's"
    with a.fenced():
        _write(factories[0], "while-held")

    clock.advance(seconds=2)  # a stopped renewing 11 s ago (a paused process)
    assert b.renew()
    assert b.token == (first or 0) + 1
    with pytest.raises(LeaseLost), a.fenced():
        _write(factories[0], "after-takeover")
    assert not a.held and a.fenced_out == 1
    assert _written(factories[1]) == {"while-held"}, "the old holder wrote nothing more"
    assert not a.renew(), "b keeps renewing, so a stands by"
    with b.fenced():
        _write(factories[1], "new-holder")
    assert _written(factories[0]) == {"while-held", "new-holder"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_clean_stop_hands_over_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    factories, _clock, a, b = _leases(backend, tmp_path, request)
    assert a.renew()
    a.release()
    assert not a.held
    assert b.renew(), "no wait for ttl_s after a release"
    with session_scope(factories[0]) as session:
        row = session.get_one(FleetLease, "coordinator")
        assert (row.holder, row.token) == ("b", 2)


def test_a_takeover_waits_for_the_old_holders_open_transaction(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL: the old holder's transaction began under the lease, so it may finish;
    the new holder's UPDATE waits for it and then sees what it wrote."""
    factories, clock, a, b = _leases("postgresql", tmp_path, request)
    assert a.renew()
    taken: list[bool] = []
    with a.fenced(), session_scope(factories[0]) as session:
        session.add(FleetSecret(name="reminder-sent", value="x"))
        session.flush()
        clock.advance(seconds=11)
        taker = threading.Thread(target=lambda: taken.append(b.renew()))
        taker.start()

        def waiting_on_lock() -> bool:
            with session_scope(factories[1]) as probe:
                return bool(probe.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE fleet_lease%'")))

        assert wait_until(waiting_on_lock, timeout=10), "b's UPDATE should wait for a"
        assert not taken
    taker.join(timeout=10)
    assert taken == [True]
    assert _written(factories[1]) == {"reminder-sent"}
