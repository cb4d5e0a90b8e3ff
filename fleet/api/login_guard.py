"""Brute-force defence of the login: back-off and lockout per account and per address.

Every attempt first *reserves* a failure on its account's and its address's counters,
in one short transaction, and only then is the password verified; a success gives the
reservation back.  The reservation is a single conditional ``UPDATE`` per counter
("count one more unless blocked, and set the next block from the new count"), so
parallel attempts, in one process or in several sharing the database, cannot all read
"not blocked" and slip past the limit together: PostgreSQL re-checks the condition
under the row lock, SQLite holds the database's write lock.

Counters are keyed by the username as typed, whether or not such a person exists, so
throttling says nothing about which accounts exist; a refused attempt never reaches
argon2, so hammering a blocked counter costs the fleet almost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, literal, null, or_, select, update
from sqlalchemy.orm import Session

from fleet.api.config import LoginConfig, LoginLimit
from fleet.db.base import SessionFactory, UTCDateTime, insert_on_conflict, session_scope
from fleet.db.models import LoginAudit, LoginThrottle

__all__ = ["Attempt", "audit_login", "drop_stale", "login_succeeded", "reserve_attempt"]


@dataclass(frozen=True)
class Attempt:
    """The counters one login attempt is charged to."""

    username: str
    address: str

    @property
    def account_key(self) -> str:
        return f"account:{self.username}"

    @property
    def address_key(self) -> str:
        return f"address:{self.address}"


def _instant(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())


def _next_block(
    config: LoginConfig, limit: LoginLimit, count: ColumnElement[int], now: datetime
) -> ColumnElement[Any]:
    """``blocked_until`` after ``count`` failures, as SQL: one WHEN per doubling step."""
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    failures = limit.free_failures
    while failures < limit.lockout_after and config.delay_s(limit, failures) < config.lockout_s:
        until = now + timedelta(seconds=config.delay_s(limit, failures))
        whens.append((count == failures, _instant(until)))
        failures += 1
    whens.append(
        (count >= limit.free_failures, _instant(now + timedelta(seconds=config.lockout_s)))
    )
    return case(*whens, else_=null())


def _lock_rows(session: Session, keys: Sequence[str]) -> None:
    """Create the counters if new, and lock them either way.

    The no-op update is for PostgreSQL, where a plain "do nothing" would leave an
    existing row unlocked for ``drop_stale`` to delete before the charge.
    """
    rows = [{"key": key, "failures": 0} for key in keys]
    session.execute(
        insert_on_conflict(session, LoginThrottle)
        .values(rows)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key], set_={"failures": LoginThrottle.failures}
        )
    )


def _charge(
    session: Session, key: str, limit: LoginLimit, config: LoginConfig, now: datetime
) -> bool:
    """Count one failure on ``key`` unless it is blocked at ``now``; False if blocked."""
    forget_before = now - timedelta(seconds=config.forget_after_s)
    # A NULL last failure compares as unknown, so a fresh row starts from zero too.
    kept = case((LoginThrottle.last_failure_at >= forget_before, LoginThrottle.failures), else_=0)
    count = kept + 1
    result = session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.key == key,
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now),
        )
        .values(
            failures=count,
            last_failure_at=now,
            blocked_until=_next_block(config, limit, count, now),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def reserve_attempt(
    sessions: SessionFactory, attempt: Attempt, config: LoginConfig, now: datetime
) -> int | None:
    """Charge the attempt to both counters and return None, or the seconds to wait.

    Both or neither: an attempt refused by one counter is not charged to the other.
    The address is charged first, so every transaction locks rows in the same order.
    """
    charges = ((attempt.address_key, config.address), (attempt.account_key, config.account))
    with session_scope(sessions) as session:
        _lock_rows(session, [key for key, _ in charges])
        if all(_charge(session, key, limit, config, now) for key, limit in charges):
            return None
        session.rollback()
        until = session.scalar(
            select(func.max(LoginThrottle.blocked_until)).where(
                LoginThrottle.key.in_([key for key, _ in charges])
            )
        )
    if until is None:  # not blocked after all (a success reset it): retry at once
        return 1
    return max(1, math.ceil((until - now).total_seconds()))


def drop_stale(sessions: SessionFactory, config: LoginConfig, now: datetime) -> None:
    """Drop counters with nothing left to remember (failures forgotten, no block), so
    usernames sprayed by an attacker do not pile up.

    Its own short transaction that skips rows other attempts hold (they lock theirs
    before charging them), so it never waits for them nor they for it.
    """
    forget_before = now - timedelta(seconds=config.forget_after_s)
    stale = (
        select(LoginThrottle.key)
        .where(
            or_(
                LoginThrottle.last_failure_at.is_(None),
                LoginThrottle.last_failure_at < forget_before,
            ),
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now),
        )
        .with_for_update(skip_locked=True)
    )
    with session_scope(sessions) as session:
        session.execute(
            delete(LoginThrottle)
            .where(LoginThrottle.key.in_(stale))
            .execution_options(synchronize_session=False)
        )


def login_succeeded(session: Session, attempt: Attempt, config: LoginConfig) -> None:
    """Give the address its reservation back and forgive the account its failures.

    Address first, then account, as ``reserve_attempt`` locks them: no deadlock.
    Others' failures from the same address (a shared NAT) still count: a success must
    not let an attacker holding one account wipe the address's record.
    """
    below_free = LoginThrottle.failures - 1 < config.address.free_failures
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == attempt.address_key)
        .values(
            failures=case((LoginThrottle.failures > 0, LoginThrottle.failures - 1), else_=0),
            blocked_until=case((below_free, null()), else_=LoginThrottle.blocked_until),
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == attempt.account_key)
        .values(failures=0, last_failure_at=None, blocked_until=None)
        .execution_options(synchronize_session=False)
    )


def audit_login(
    session: Session, attempt: Attempt, outcome: str, detail: str, now: datetime
) -> None:
    session.add(
        LoginAudit(
            at=now,
            username=attempt.username,
            address=attempt.address[:64],
            outcome=outcome,
            detail=detail,
        )
    )
