"""Real agents measure their bandwidth against the fleet's own endpoint, with the token
the signed run-check brought them through the broker; nobody else can use it."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from agent.contract import bandwidth_token
from agent.hardware.scenario import default_scenario
from fleet.checks.readiness import Readiness, ReadinessState
from fleet.db.base import session_scope
from fleet.db.models import AuditEntry
from tests.e2e.world import LUXI, MORNING, SHIYAN, LessonRow, World, sample_value, wait_until


def test_checked_classrooms_measure_against_the_fleet_endpoint(world: World) -> None:
    fleet = world.start_fleet(serve_http=True)
    endpoint = world.config.checks.bandwidth_url
    # Classrooms whose bandwidth test moves real bytes to and from the fleet.
    scenario = replace(default_scenario(),
                       network=replace(default_scenario().network, http=True))
    world.start_agent(SHIYAN, scenario=scenario)
    world.start_agent(LUXI, scenario=scenario)
    world.wait_reporting(SHIYAN, LUXI)
    start = MORNING + timedelta(minutes=30)
    [lesson] = world.import_lessons(LessonRow(start, "洞头区实验小学", ("洞头区鹿西乡小学",)))

    world.clock.set(start - timedelta(minutes=10))  # the lead time: the checks go out
    world.tick()

    def ready_now() -> Readiness | None:
        readiness = world.readiness(lesson)
        return readiness if readiness.state is ReadinessState.READY else None

    ready = wait_until("the lesson to be ready", ready_now)
    assert {(e.device_id, e.verdict) for e in ready.ends} == {(SHIYAN, "pass"), (LUXI, "pass")}
    for run in world.check_runs(lesson):
        measured = run.probes["bandwidth"]
        assert (measured["down_mbps"], measured["up_mbps"]) == (
            scenario.network.down_mbps, scenario.network.up_mbps)
        assert not [f for f in run.findings if f["reason"].startswith("bandwidth")]
    # Both ends moved their bytes through the endpoint: down and up each.
    samples = list(fleet.bandwidth.samples())
    assert sample_value(samples, "syncclass_bandwidth_requests_total", result="admitted") == 4

    # A caller without a device's token gets nothing, however much it asks for.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{endpoint}?bytes=33554432", timeout=10)
    assert refused.value.code == 401 and len(refused.value.read()) < 300
    samples = list(fleet.bandwidth.samples())
    assert sample_value(samples, "syncclass_bandwidth_requests_total", result="missing") == 1


def test_a_manual_check_carries_a_token_the_audit_does_not_keep(world: World) -> None:
    fleet = world.start_fleet(serve_http=True)
    scenario = replace(default_scenario(),
                       network=replace(default_scenario().network, http=True))
    world.start_agent(LUXI, scenario=scenario)
    world.wait_reporting(LUXI)
    entry = fleet.actions.request("dt-luxi-tech", LUXI, "run-check")
    wait_until("the agent's answer",
               lambda: sample_value(fleet.checks.samples(), "syncclass_checks_answered_total",
                                    verdict="pass"))
    assert sample_value(fleet.bandwidth.samples(), "syncclass_bandwidth_requests_total",
                        result="admitted") == 2
    with session_scope(fleet.sessions) as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.id == entry.id)).one()
        assert audited.args["bandwidth_url"] == world.config.checks.bandwidth_url
        assert bandwidth_token(audited.args["bandwidth_url"])[1] is None
