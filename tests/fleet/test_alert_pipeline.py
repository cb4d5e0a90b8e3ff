"""The notification path as one list of stages, and the listeners of ticket changes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.contract import Kind
from fleet.alerts import pipeline
from fleet.alerts.lifecycle import AlertChange
from fleet.alerts.stages.base import Tick
from tests.fleet.alert_helpers import World, build_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def _offline(world: World) -> None:
    world.send(Kind.STATUS, "rural-1", state="offline", agent_version="1.0", session=1)


def test_the_stages_run_in_alertmanagers_order() -> None:
    names = [stage.__module__.rsplit(".", 1)[1] for stage in pipeline.STAGES]
    assert names == ["inhibit", "maintenance", "holiday", "silence", "lesson_window",
                     "timers", "group", "route", "outbox"]


def test_a_stage_added_to_the_list_sees_the_groups_before_they_are_routed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a new stage (say, lesson windows) needs: one function in the list, and the
    tick's groups are its to reorder or hold before ``route`` writes the messages."""
    seen: list[list[str]] = []

    def hold_everything(tick: Tick) -> None:
        seen.append([g.kind for g in tick.groups])
        tick.groups.clear()

    stages = list(pipeline.STAGES)
    stages.insert(stages.index(pipeline.route.stage), hold_everything)
    monkeypatch.setattr(pipeline, "STAGES", tuple(stages))
    _offline(world)
    world.tick_after(35)  # past the up-delay: fires, owes "firing"
    world.tick_after(31)  # past group_wait: the group forms, and is held
    assert ["firing"] in seen
    assert world.notifications() == []


def test_listeners_hear_each_committed_change(world: World) -> None:
    heard: list[AlertChange] = []

    def listener(changes: Sequence[AlertChange]) -> None:
        heard.extend(changes)

    world.engine.listen(listener)
    _offline(world)
    assert [(c.kind, c.state) for c in heard] == [("pending", "pending")]
    world.tick_after(35)
    assert [(c.kind, c.state) for c in heard][-1] == ("fired", "firing")
    assert len({c.alert_id for c in heard}) == 1


def test_a_failing_listener_does_not_stop_the_alerts(world: World) -> None:
    def broken(changes: Sequence[AlertChange]) -> None:
        raise RuntimeError("a page that went away")

    world.engine.listen(broken)
    _offline(world)
    world.tick_after(35)
    assert [n.kind for n in world.notifications()] == []  # group_wait still running
    world.tick_after(31)
    assert {n.kind for n in world.notifications()} == {"firing"}
