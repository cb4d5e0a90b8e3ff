"""The checks and actions on PostgreSQL: the same rules, the same once-only sending."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from fleet.actions.config import ActionConfig
from fleet.actions.outcomes import ActionRefused, RefusalCode
from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from fleet.checks.readiness import ReadinessState, lesson_readiness
from fleet.checks.scheduler import CheckScheduler
from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.models import AuditEntry, CheckRun, Lesson
from tests.clock import ManualClock
from tests.fleet.checks_helpers import MONDAY_0800, World, fleet_ingest
from tests.fleet.pg import fresh_database


def test_checks_and_actions_on_postgres(postgres: str, broker: Mosquitto, tmp_path: Path) -> None:
    url = fresh_database(postgres, f"checks_{uuid.uuid4().hex[:8]}")
    world = World.create(tmp_path, url)
    lesson = world.pair(MONDAY_0800)
    clock = ManualClock(MONDAY_0800 - timedelta(minutes=25))
    publisher = fleet_ingest(broker, world.sessions, [])
    actions = Actions(world.sessions, publisher, Signer.from_file(tmp_path / "k"),
                      ActionConfig(), clock)
    mine = CheckScheduler(world.sessions, actions, clock=clock)
    other_engine = make_engine(url)
    other = CheckScheduler(SessionFactory(bind=other_engine), actions, clock=clock)
    other_sent: list[int] = []

    def other_ticks_first(session: Session) -> None:
        if not other_sent and session.new:
            other_sent.append(other.tick())

    event.listen(world.sessions, "before_commit", other_ticks_first)
    assert mine.tick() == 0, "the other process recorded and sent them first"
    event.remove(world.sessions, "before_commit", other_ticks_first)
    assert other_sent == [2]

    with session_scope(world.sessions) as s:
        runs = {r.device_id: r.request_id for r in s.scalars(select(CheckRun))}
    mine.on_check("m-1", {"verdict": "pass", "probes": {}, "findings": [],
                          "request_id": runs["m-1"]})
    clock.advance(minutes=4)
    assert mine.tick() == 0
    with session_scope(world.sessions) as s:
        state = lesson_readiness(s, s.get_one(Lesson, lesson), clock())
    assert state.state is ReadinessState.NOT_READY
    clock.set(MONDAY_0800 - timedelta(minutes=7))
    assert mine.tick() == 1, "the silent end is rechecked"

    with pytest.raises(ActionRefused) as err:
        actions.request("tech-zhang", "r-1", "reboot")
    assert err.value.code is RefusalCode.LEAD_WINDOW
    actions.request("tech-zhang", "r-1", "reboot", force=True, reason="网络卡死 / hung")
    with pytest.raises(ActionRefused) as err:
        actions.request("tech-zhang", "r-1", "reboot", force=True, reason="again")
    assert err.value.code is RefusalCode.RATE_LIMITED
    with session_scope(world.sessions) as s:
        outcomes = list(s.scalars(select(AuditEntry.outcome).order_by(AuditEntry.id)))
    assert outcomes == ["refused", "accepted", "refused"]
    publisher.close()
    other_engine.dispose()
    world.sessions.kw["bind"].dispose()
