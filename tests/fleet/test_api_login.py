"""Login under brute force: back-off and lockout per account and per address, counted in
the database (so shared by fleet processes and kept over a restart), every attempt
logged and audited."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import fleet.api.auth as auth
from fleet.api.config import LoginConfig, LoginLimit
from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.models import LoginAudit, LoginThrottle
from tests.fleet.api_world import PASSWORD, World, open_world, world
from tests.fleet.db import fresh_db
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot

__all__ = ["world"]

LOGIN = "/api/v1/auth/login"
# The defaults: 5 failures free, then 1, 2, 4, 8, 16 s, and 15 minutes from the 10th.
WAITS = [1, 2, 4, 8, 16, 900]


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post(LOGIN, json={"username": username, "password": password})


def _throttle(w: World, key: str) -> LoginThrottle | None:
    with session_scope(w.sessions) as session:
        return session.get(LoginThrottle, key)


def _audit(w: World, username: str) -> list[str]:
    with session_scope(w.sessions) as session:
        query = select(LoginAudit.outcome).where(LoginAudit.username == username)
        return list(session.scalars(query.order_by(LoginAudit.id)))


def _walk_to_lockout(w: World, username: str) -> list[tuple[int, str | None]]:
    """Wrong passwords as fast as allowed until the lockout; (status, Retry-After) each."""
    seen = []
    for _ in range(4):
        reply = _login(w.client, username, "wrong")
        seen.append((reply.status_code, reply.headers.get("retry-after")))
    for wait in WAITS:
        reply = _login(w.client, username, "wrong")
        seen.append((reply.status_code, reply.headers.get("retry-after")))
        refused = _login(w.client, username, "wrong")
        seen.append((refused.status_code, refused.headers.get("retry-after")))
        w.clock.advance(seconds=wait)
    return seen


def test_account_backs_off_exponentially_then_locks_out(world: World) -> None:
    w = world
    for _ in range(4):
        assert _login(w.client, "dt-luxi-tech", "wrong").status_code == 401
    for wait in WAITS:
        assert _login(w.client, "dt-luxi-tech", "wrong").status_code == 401
        refused = _login(w.client, "dt-luxi-tech", "wrong")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(wait)
        detail = refused.json()["detail"]
        assert "登录失败次数过多" in detail and f"try again in {wait} s" in detail
        # The right password is refused as well until the wait is over.
        assert _login(w.client, "dt-luxi-tech", PASSWORD).status_code == 429
        if wait < 900:
            w.clock.advance(seconds=wait)
    w.clock.advance(seconds=899)
    right = _login(w.client, "dt-luxi-tech", PASSWORD)
    assert (right.status_code, right.headers["retry-after"]) == (429, "1")
    w.clock.advance(seconds=1)
    assert _login(w.client, "dt-luxi-tech", PASSWORD).status_code == 200
    row = _throttle(w, "account:dt-luxi-tech")
    assert row is not None and (row.failures, row.blocked_until) == (0, None)
    # Forgiven: the next mistakes are free again.
    for _ in range(4):
        assert _login(w.client, "dt-luxi-tech", "wrong").status_code == 401
    assert _login(w.client, "dt-luxi-tech", PASSWORD).status_code == 200


def test_an_unknown_username_is_throttled_exactly_like_a_real_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No way to tell accounts apart: same answers, same waits.  Every attempt that is
    not throttled pays for one argon2 verification (the dummy hash for an unknown user),
    and a throttled one pays for none."""
    verified: list[str] = []
    real_verify = auth.verify_password

    def counting(stored: str, password: str) -> bool:
        verified.append(stored)
        return real_verify(stored, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    real = _walk_to_lockout(world, "dt-shiyan-tech")
    assert len(verified) == 4 + len(WAITS)
    verified.clear()
    unknown = _walk_to_lockout(world, "no-such-person")
    assert unknown == real
    assert verified == [auth._DUMMY_HASH] * (4 + len(WAITS))


def test_failures_are_forgotten_after_a_quiet_hour(world: World) -> None:
    """...and their counters dropped at the next successful login, so that sprayed
    usernames do not pile up."""
    for _ in range(4):
        assert _login(world.client, "dt-dianjiao", "wrong").status_code == 401
    assert _login(world.client, "sprayed", "guess").status_code == 401
    world.clock.advance(minutes=61)
    for _ in range(5):
        assert _login(world.client, "dt-dianjiao", "wrong").status_code == 401
    assert _login(world.client, "dt-dianjiao", "wrong").status_code == 429
    assert _login(world.client, "admin", PASSWORD).status_code == 200
    assert _throttle(world, "account:sprayed") is None
    kept = _throttle(world, "account:dt-dianjiao")
    assert kept is not None and kept.failures == 5


def test_one_address_is_limited_across_accounts(world: World) -> None:
    """Password spraying (one guess per account) from one address hits the address's
    limit; another address is not affected, and a success from the sprayer's address
    gives back only its own charge, not the others' failures."""
    w = world
    w.services.config = replace(
        w.services.config, login=LoginConfig(address=LoginLimit(3, 6))
    )
    assert _login(w.client, "sprayed-1", "guess").status_code == 401
    assert _login(w.client, "sprayed-2", "guess").status_code == 401
    assert _login(w.client, "admin", PASSWORD).status_code == 200
    address = _throttle(w, "address:testclient")
    assert address is not None and address.failures == 2
    assert _login(w.client, "sprayed-3", "guess").status_code == 401
    refused = _login(w.client, "sprayed-4", "guess")
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    assert _login(w.client, "admin", PASSWORD).status_code == 429
    elsewhere = TestClient(w.app, client=("198.51.100.7", 40000))
    assert _login(elsewhere, "admin", PASSWORD).status_code == 200
    assert _login(elsewhere, "sprayed-4", "guess").status_code == 401
    account = _throttle(w, "account:sprayed-4")
    assert account is not None and account.failures == 1, "refused at the address: not charged"


def test_every_attempt_is_logged_and_audited(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    with caplog.at_level(logging.INFO, logger="fleet.api.auth"):
        for _ in range(5):
            _login(w.client, "yq-dianjiao", "wrong")
        _login(w.client, "yq-dianjiao", PASSWORD)
        w.clock.advance(seconds=1)
        _login(w.client, "yq-dianjiao", PASSWORD)
        forged = _login(w.client, "ghost\nlogin ok: 'admin'", "wrong")
    assert _audit(w, "yq-dianjiao") == ["failed"] * 5 + ["throttled", "ok"]
    messages = [r.getMessage() for r in caplog.records if r.name == "fleet.api.auth"]
    assert messages.count("login failed: 'yq-dianjiao' from testclient (wrong password)") == 5
    assert "login throttled: 'yq-dianjiao' from testclient, retry in 1 s" in messages
    assert "login ok: 'yq-dianjiao' from testclient" in messages
    # A username with a line break (to forge a "login ok" line) is refused unread.
    assert forged.status_code == 422 and not any("ghost" in m for m in messages)
    entries = w.get("admin", "/api/v1/auth/audit", params={"username": "yq-dianjiao"}).json()
    assert [e["outcome"] for e in entries] == ["ok", "throttled"] + ["failed"] * 5
    assert {e["address"] for e in entries} == {"testclient"}
    assert entries[-1]["detail"] == "wrong password"
    assert w.get("dt-dianjiao", "/api/v1/auth/audit").status_code == 403


# ---------------------------------------------------------------- several fleet processes


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database holding the pilot, on each engine."""
    url = None
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres"), f"l_{uuid.uuid4().hex[:12]}")
    sessions = fresh_db(tmp_path, url)
    load_pilot(sessions)
    engine = sessions.kw["bind"]
    yield engine.url.render_as_string(hide_password=False)
    engine.dispose()


def _process(url: str, stack: ExitStack) -> World:
    """One fleet process: its own engine (connection pool), app and clock."""
    engine = make_engine(url)
    stack.callback(engine.dispose)
    w = open_world(SessionFactory(bind=engine, expire_on_commit=False))
    stack.enter_context(w.client)
    return w


def _at_once(calls: list[Callable[[], int]]) -> list[int | str]:
    """Run ``calls`` in threads released together; each one's status, or its error."""
    barrier = threading.Barrier(len(calls))
    results: list[int | str] = []
    lock = threading.Lock()

    def run(call: Callable[[], int]) -> None:
        barrier.wait()
        try:
            status: int | str = call()
        except Exception as exc:  # the assertion then shows what went wrong
            status = repr(exc)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(results, key=str)


def test_parallel_guesses_through_two_processes_get_exactly_the_allowance(
    shared_database: str,
) -> None:
    """8 wrong passwords at once from 8 addresses, 4 through each of two fleet processes
    on one database: exactly the 5 free attempts reach the password check, the rest
    wait.  After a restart (a third process) the account is still waiting, right
    password or not."""
    with ExitStack() as stack:
        one, two = _process(shared_database, stack), _process(shared_database, stack)

        def guess(w: World, host: int) -> Callable[[], int]:
            # From 8 addresses, so that only the account's counter is shared.
            client = TestClient(w.app, client=(f"203.0.113.{host}", 40000))
            return lambda: int(_login(client, "dt-luxi-tech", "wrong").status_code)

        statuses = _at_once([guess(w, i) for i, w in enumerate([one, two] * 4)])
        assert statuses == [401] * 5 + [429] * 3
        refused = _login(two.client, "dt-luxi-tech", PASSWORD)
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
        # PostgreSQL cannot store a NUL: refused before it reaches the database.
        assert _login(two.client, "dt-luxi\x00", "wrong").status_code == 422
        nul = two.get("admin", "/api/v1/auth/audit", params={"username": "\x00"})
        assert nul.status_code == 422
        assert sorted(_audit(one, "dt-luxi-tech")) == ["failed"] * 5 + ["throttled"] * 4

    with ExitStack() as stack:
        restarted = _process(shared_database, stack)
        assert _login(restarted.client, "dt-luxi-tech", PASSWORD).status_code == 429
        restarted.clock.advance(seconds=1)
        assert _login(restarted.client, "dt-luxi-tech", PASSWORD).status_code == 200


def test_successes_and_failures_at_once_from_one_address(shared_database: str) -> None:
    """A NAT address: four people log in while someone mistypes, through two processes,
    with stale counters to drop (two of them the people's own).  Every request gets its
    answer: no deadlock, no 500, and no right password told to wait because its counter
    was dropped under it.  The address ends up charged with the failures only."""
    with ExitStack() as stack:
        one, two = _process(shared_database, stack), _process(shared_database, stack)
        for name in ("stale-1", "stale-2", "admin", "dt-dianjiao"):
            assert _login(one.client, name, "wrong").status_code == 401
        for w in (one, two):
            w.clock.advance(minutes=61)

        def attempt(w: World, username: str, password: str) -> Callable[[], int]:
            return lambda: int(_login(w.client, username, password).status_code)

        people = ("admin", "dt-dianjiao", "dt-shiyan-tech", "yq-dianjiao")
        calls = [attempt(w, p, PASSWORD) for w, p in zip([one, two] * 2, people, strict=True)]
        calls += [attempt(w, "dt-luxi-tech", "wrong") for w in [one, two] * 2]
        statuses = _at_once(calls)
        assert statuses == [200] * 4 + [401] * 4, statuses
        assert _throttle(one, "account:stale-1") is None
        address = _throttle(one, "address:testclient")
        assert address is not None and address.failures == 4
