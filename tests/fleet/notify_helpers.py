"""Shared pieces of the outbox tests: a fresh database (or one shared by two processes'
connections), a stopped clock, rows queued the way the alert engine queues them, and rows
read back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Notification
from fleet.metrics import Sample
from fleet.notify import enqueue
from tests.clock import ManualClock
from tests.fleet.db import fresh_db

__all__ = ["T0", "add", "clock", "load", "sample", "sessions", "two_processes"]

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # a Monday, 09:30 in Zhejiang


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[SessionFactory]:
    factory = fresh_db(tmp_path)
    yield factory
    factory.kw["bind"].dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def two_processes(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                  *tables: type) -> list[SessionFactory]:
    """Two processes' connections to one database ("sqlite": a file; "postgresql": the real
    server), with ``tables`` (default: the outbox) emptied."""
    url = (f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres"))
    factories = [fresh_db(tmp_path, url) for _ in range(2)]
    with session_scope(factories[0]) as session:
        for table in tables or (Notification,):
            session.execute(delete(table))
    return factories


def add(
    sessions: SessionFactory, channel: str, target: str, clock: ManualClock, **extra: object
) -> int:
    with session_scope(sessions) as session:
        row = enqueue(
            session,
            alert_id=None,
            channel=channel,
            target=target,
            kind=str(extra.pop("kind", "firing")),
            subject=str(extra.pop("subject", "【告警】三(2)班 摄像头缺失 camera missing")),
            body="二年级数学 10:00 · 大门岛小学\n摄像头缺失 camera missing",
            payload=extra.pop("payload", None),  # type: ignore[arg-type]
            now=clock(),
        )
        return row.id


def load(sessions: SessionFactory, row_id: int) -> Notification:
    with session_scope(sessions) as session:
        return session.get_one(Notification, row_id)


def sample(samples: list[Sample], name: str, **labels: str) -> float:
    [value] = [s.value for s in samples if s.name == name and s.labels == labels]
    return value
