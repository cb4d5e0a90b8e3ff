"""One ticket per fault: a failed check's finding lands on the ticket of the fault it
names, with the lesson at stake; only findings no fault rule takes make a check ticket.

The payloads are the real agent's: its probes run on the simulated classroom, and what
they return goes through the wire contract to the engine, as the ingest hands it over.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.contract import Kind
from agent.hardware.scenario import Fault, SimNetwork, default_scenario
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.runner import ProbeRunner
from agent.thresholds import Thresholds
from fleet.alerts import AlertEngine
from fleet.alerts.rules import rule_for_reason
from fleet.alerts.signal import RULES
from fleet.db.base import session_scope
from fleet.db.models import Alert, CheckRun
from tests.fleet.alert_helpers import World, build_world

STUDENT_CAMERA = default_scenario().camera[1].id


class Classroom:
    """The agent's probes on a simulated classroom, producing contract payload fields."""

    def __init__(self, hardware: SimulatedHardware) -> None:
        self.hardware = hardware
        self.runner = ProbeRunner(ProbeContext(
            hardware=hardware, thresholds=Thresholds(), targets={"fleet": "127.0.0.1"},
            bandwidth_url="http://127.0.0.1:9/api/v1/bandwidth"))
        self.runner.collect()  # the agent's first look: the devices it expects from now on

    def telemetry(self) -> dict[str, Any]:
        return {"interval": 30, "sections": self.runner.collect().sections}

    def check(self, request_id: str, params: CheckParams | None = None) -> dict[str, Any]:
        outcome = self.runner.check(params or CheckParams())
        return {**outcome.to_json(), "request_id": request_id}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def _alerts(world: World) -> list[Alert]:
    with session_scope(world.sessions) as s:
        rows = AlertEngine.query(s)
        s.expunge_all()
        return rows


def _lesson_check(world: World, room: Classroom, request_id: str,
                  params: CheckParams | None = None) -> None:
    with session_scope(world.sessions) as s:
        s.add(CheckRun(request_id=request_id, lesson_id=world.lesson_id, device_id="rural-1",
                       phase="first", requested_at=world.clock()))
    world.send(Kind.CHECK, "rural-1", **room.check(request_id, params))


def test_a_failed_check_lands_on_the_faults_ticket_with_the_lesson(world: World) -> None:
    room = Classroom(SimulatedHardware(default_scenario()))
    room.hardware.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    world.send(Kind.TELEMETRY, "rural-1", **room.telemetry())
    world.tick_after(31)  # past group_wait: the technician is told once
    [fault] = _alerts(world)
    assert (fault.rule, fault.entity, fault.lesson_id) == ("camera_missing", "camera", None)
    assert len(world.notifications("firing")) == 2  # the technician's mail and robot

    _lesson_check(world, room, "cmd-1")
    world.tick_after(31)
    [same] = _alerts(world)  # no "课前检测未通过" ticket beside it
    assert (same.id, same.lesson_id) == (fault.id, world.lesson_id)
    assert len(world.notifications("firing")) == 2  # and no second stream

    world.engine.acknowledge(fault.id, "lin", "换一根USB线 / replacing the cable")
    for n in (2, 3):  # the recheck and another fail again: all quiet now
        _lesson_check(world, room, f"cmd-{n}")
        world.send(Kind.TELEMETRY, "rural-1", **room.telemetry())
        # Twice past the escalation (900 s), past the reminder (1800 s), before the lesson.
        world.tick_after(1000)
    assert [a.id for a in _alerts(world)] == [fault.id]
    assert {n.kind for n in world.notifications()} == {"firing", "acknowledged"}

    room.hardware.clear("camera_unplugged", STUDENT_CAMERA)
    world.send(Kind.TELEMETRY, "rural-1", **room.telemetry())
    world.tick_after(21)  # the world's down-delay
    assert _alerts(world)[0].state == "resolved"


def test_a_fault_only_a_check_finds_is_its_own_rule_not_a_check_ticket(world: World) -> None:
    room = Classroom(SimulatedHardware(default_scenario()))
    room.hardware.apply(Fault("camera_black", device=STUDENT_CAMERA))
    _lesson_check(world, room, "cmd-1")
    world.tick_after(1)
    [alert] = _alerts(world)
    assert (alert.rule, alert.entity) == ("camera_black", f"camera:{STUDENT_CAMERA}")
    assert alert.lesson_id == world.lesson_id
    assert "二年级数学" in alert.summary_zh  # the lesson at stake


def test_a_finding_no_fault_rule_takes_makes_the_check_ticket(world: World) -> None:
    # The bandwidth test's server refuses: the check failed, yet no device is at fault.
    scenario = replace(default_scenario(), network=SimNetwork(http=True))
    room = Classroom(SimulatedHardware(scenario))
    _lesson_check(world, room, "cmd-1")
    world.tick_after(1)
    [alert] = _alerts(world)
    assert (alert.rule, alert.lesson_id) == ("check_failed", world.lesson_id)
    assert [f["reason"] for f in alert.details["findings"]] == ["bandwidth_test_failed"] * 2

    room.hardware.scenario = default_scenario()  # the test server is back
    _lesson_check(world, room, "cmd-2")
    world.tick_after(21)  # the world's down-delay
    assert _alerts(world)[0].state == "resolved"


def test_reasons_map_to_rules_by_name_never_by_substring() -> None:
    assert rule_for_reason("microphone_silent") == "mic_silent"
    assert rule_for_reason("bandwidth_up_low") == rule_for_reason("bandwidth_down_low")
    # Words that once matched by substring ("none", "down", "loss") name nothing.
    for reason in ("none", "down", "loss", "camera_missing_or_none", "bandwidth_test_failed"):
        assert rule_for_reason(reason) is None
    for reason in ("camera_missing", "network_loss_high", "overheat", "clock_unsynced"):
        assert rule_for_reason(reason) in RULES


def test_only_a_measuring_check_clears_what_only_checks_measure(world: World) -> None:
    """The telemetry repeats the last bandwidth figures ungraded ("ok": true even at
    0.5 Mbit/s): it must not clear the bandwidth ticket its check raised a moment ago."""
    room = Classroom(SimulatedHardware(default_scenario()))
    room.hardware.apply(Fault("bandwidth_up", value=0.5))
    _lesson_check(world, room, "cmd-1")
    world.send(Kind.TELEMETRY, "rural-1", **room.telemetry())
    world.tick_after(61)  # bandwidth_low's up-delay
    [alert] = _alerts(world)
    assert (alert.rule, alert.state, alert.clear_since) == ("bandwidth_low", "firing", None)

    room.hardware.clear("bandwidth_up")
    _lesson_check(world, room, "cmd-2")  # measured again, and enough now
    world.tick_after(21)  # the world's down-delay
    assert _alerts(world)[0].state == "resolved"


def test_the_other_ends_address_is_cleared_by_the_next_check_not_by_telemetry(
    world: World,
) -> None:
    """Only lesson checks measure the partner classroom ("peer"): the telemetry, which
    does not list it, must neither clear its ticket nor be needed to."""
    peer = CheckParams(targets={"peer": "10.20.30.40"})
    room = Classroom(SimulatedHardware(default_scenario()))
    room.hardware.apply(Fault("packet_loss", device="10.20.30.40", value=30))
    _lesson_check(world, room, "cmd-1", peer)
    world.send(Kind.TELEMETRY, "rural-1", **room.telemetry())
    world.tick_after(61)  # network_loss's up-delay
    [alert] = _alerts(world)
    assert (alert.rule, alert.entity, alert.state) == ("network_loss", "target:peer", "firing")
    assert alert.clear_since is None
    assert "对端教室" in alert.summary_zh and "partner classroom" in alert.summary_en
    assert "peer" not in alert.summary_zh + alert.summary_en

    room.hardware.clear("packet_loss")
    _lesson_check(world, room, "cmd-2", peer)
    world.tick_after(21)  # the world's down-delay
    assert _alerts(world)[0].state == "resolved"
