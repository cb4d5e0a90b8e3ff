"""Readiness from CheckRun rows, the bulk query for a day, and the checks config."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from fleet.checks.config import CheckConfig
from fleet.checks.readiness import ReadinessState, lesson_readiness, lessons_readiness
from fleet.db.base import session_scope
from fleet.db.models import CheckRun, Lesson
from fleet.settings import ConfigError, section
from tests.fleet.checks_helpers import MONDAY_0800, World

BEFORE = MONDAY_0800 - timedelta(minutes=20)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


def add_run(world: World, lesson: int, device: str, verdict: str | None,
            requested: datetime = BEFORE, answered: datetime | None = None,
            phase: str = "first") -> None:
    with session_scope(world.sessions) as s:
        s.add(CheckRun(request_id=f"{lesson}-{device}-{phase}", lesson_id=lesson,
                       device_id=device, phase=phase, requested_at=requested,
                       answered_at=answered, verdict=verdict,
                       findings=[{"reason": verdict}] if verdict else []))


def readiness(world: World, lesson: int, now: datetime) -> Any:
    with session_scope(world.sessions) as s:
        return lesson_readiness(s, s.get_one(Lesson, lesson), now)


def test_states_follow_the_worst_end(world: World) -> None:
    lesson = world.pair(MONDAY_0800)
    assert readiness(world, lesson, BEFORE).state is ReadinessState.PENDING
    add_run(world, lesson, "m-1", "pass", answered=BEFORE)
    assert readiness(world, lesson, BEFORE).state is ReadinessState.PENDING
    add_run(world, lesson, "r-1", "warn", answered=BEFORE)
    assert readiness(world, lesson, BEFORE).state is ReadinessState.WARN
    add_run(world, lesson, "r-1", None, phase="manual")
    assert readiness(world, lesson, BEFORE).state is ReadinessState.CHECKING
    add_run(world, lesson, "m-1", "no_answer", phase="recheck")
    state = readiness(world, lesson, BEFORE)
    assert state.state is ReadinessState.NOT_READY
    assert state.to_json()["ends"][0] | {"requested_at": None} == {
        "classroom_id": world.classrooms["main-1"], "classroom": "main-1", "school": "城关小学",
        "role": "main", "device_id": "m-1", "state": "not_ready", "label_zh": "未就绪",
        "label_en": "not ready", "verdict": "no_answer", "phase": "recheck",
        "request_id": f"{lesson}-m-1-recheck", "requested_at": None, "answered_at": None,
        "findings": [{"reason": "no_answer"}]}


def test_a_lesson_never_checked_is_unknown_once_started(world: World) -> None:
    lesson = world.pair(MONDAY_0800)
    assert readiness(world, lesson, MONDAY_0800).state is ReadinessState.UNKNOWN


def test_a_classroom_without_devices_is_unknown(world: World) -> None:
    world.classroom("main-1", ["m-1"])
    world.classroom("recv-1", ["r-off"], enabled=False)
    lesson = world.lesson(MONDAY_0800, "main-1", ["recv-1"])
    add_run(world, lesson, "m-1", "pass", answered=BEFORE)
    state = readiness(world, lesson, BEFORE)
    assert state.state is ReadinessState.UNKNOWN
    assert [(e.role, e.device_id, e.state) for e in state.ends] == [
        ("main", "m-1", ReadinessState.READY), ("receiver", None, ReadinessState.UNKNOWN)]


def test_a_cancelled_lesson_is_unknown(world: World) -> None:
    world.classroom("main-1", ["m-1"])
    world.classroom("recv-1", ["r-1"])
    lesson = world.lesson(MONDAY_0800, "main-1", ["recv-1"], cancelled=True)
    assert readiness(world, lesson, BEFORE).state is ReadinessState.UNKNOWN


def test_readiness_as_of_an_instant_ignores_what_came_after(world: World) -> None:
    lesson = world.pair(MONDAY_0800)
    add_run(world, lesson, "m-1", "pass", answered=BEFORE)
    add_run(world, lesson, "r-1", "fail", answered=MONDAY_0800 + timedelta(minutes=1))
    add_run(world, lesson, "r-1", "pass", phase="manual",
            requested=MONDAY_0800 + timedelta(minutes=2),
            answered=MONDAY_0800 + timedelta(minutes=3))
    assert readiness(world, lesson, MONDAY_0800).state is ReadinessState.CHECKING
    assert readiness(world, lesson, MONDAY_0800 + timedelta(minutes=1)).state is (
        ReadinessState.NOT_READY)
    assert readiness(world, lesson, MONDAY_0800 + timedelta(minutes=5)).state is (
        ReadinessState.READY)


@pytest.fixture
def statements(world: World) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = world.sessions.kw["bind"]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_a_days_readiness_takes_the_same_few_queries_for_any_number_of_lessons(
    world: World, statements: list[str]
) -> None:
    lessons = [world.pair(MONDAY_0800 + timedelta(hours=n % 6), n) for n in range(24)]
    for lesson in lessons:
        add_run(world, lesson, f"m-{lessons.index(lesson)}", "pass", answered=BEFORE)

    def queries_for(ids: list[int]) -> int:
        with session_scope(world.sessions) as s:
            rows = s.query(Lesson).filter(Lesson.id.in_(ids)).all()
            statements.clear()
            result = lessons_readiness(s, rows, BEFORE)
            assert set(result) == set(ids)
            assert all(r.state is ReadinessState.PENDING for r in result.values())
            return len(statements)

    assert queries_for(lessons[:2]) == queries_for(lessons) <= 5


def test_check_config_names_bad_keys() -> None:
    with pytest.raises(ConfigError) as err:
        section(CheckConfig, {"lead_minutes": "30"}, "checks")
    assert err.value.key == "checks.lead_minutes"
    with pytest.raises(ConfigError) as err:
        section(CheckConfig, {"lead_minuts": 30}, "checks")
    assert err.value.key == "checks.lead_minuts"
    with pytest.raises(ConfigError, match="spread_minutes"):
        section(CheckConfig, {"spread_minutes": 25}, "checks")
    with pytest.raises(ConfigError, match="recheck_verdicts"):
        section(CheckConfig, {"recheck_verdicts": ["fial"]}, "checks")
    config = section(CheckConfig, {"lead_minutes": 45, "recheck_verdicts": ["warn", "fail"]},
                     "checks")
    assert config.lead_minutes == 45.0 and config.recheck_verdicts == ("warn", "fail")
