"""A lesson whose ends are healthy becomes ready before it starts."""

from __future__ import annotations

from datetime import timedelta

from fleet.checks.readiness import Readiness, ReadinessState
from tests.e2e.world import LUXI, MORNING, SHIYAN, LessonRow, World, sample_value, wait_until


def test_healthy_lesson_is_checked_and_ready_before_it_starts(world: World) -> None:
    fleet = world.start_fleet()
    world.start_agent(SHIYAN)
    world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    start = MORNING + timedelta(minutes=30)
    # The Yueqing lesson's classrooms have no agent running: the control that cannot pass.
    healthy, unattended = world.import_lessons(
        LessonRow(start, "洞头区实验小学", ("洞头区鹿西乡小学",)),
        LessonRow(start, "乐清市城南实验小学", ("乐清市大荆镇山头小学",), subject="英语"),
    )

    world.tick()
    assert world.readiness(healthy).state is ReadinessState.PENDING  # 30 min ahead: not yet

    world.clock.set(start - timedelta(minutes=10))  # the lead time
    world.tick()
    def ready_now() -> Readiness | None:
        readiness = world.readiness(healthy)
        return readiness if readiness.state is ReadinessState.READY else None

    ready = wait_until("the lesson to be ready", ready_now)
    assert world.clock() < start
    assert {(e.device_id, e.role, e.verdict, e.phase) for e in ready.ends} == {
        (SHIYAN, "main", "pass", "first"), (LUXI, "receiver", "pass", "first"),
    }
    # Each end measured the path to the other: the fleet told it the peer's address.
    for run in world.check_runs(healthy):
        assert run.probes["network"]["targets"]["peer"]["ok"] is True
    wait_until("four checks acknowledged by the broker", lambda: sample_value(
        fleet.checks.samples(), "syncclass_checks_sent_total", phase="first") == 4)
    samples = list(fleet.checks.samples())
    assert sample_value(samples, "syncclass_checks_answered_total", verdict="pass") == 2

    world.clock.advance(seconds=61)  # past the answer timeout
    world.tick()
    silent = world.readiness(unattended)
    assert silent.state is ReadinessState.NOT_READY
    assert {e.verdict for e in silent.ends} == {"no_answer"}
    assert world.readiness(healthy).state is ReadinessState.READY
