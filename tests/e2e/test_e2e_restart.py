"""A fleet restarted mid-morning keeps its alerts and its schedule: checks already sent
are not sent again, checks that fell due while it was down are sent."""

from __future__ import annotations

from datetime import timedelta

from agent.hardware.scenario import Fault
from fleet.checks.readiness import ReadinessState
from fleet.db.models import AlertState, CheckRun
from tests.e2e.world import (
    DONGTOU_COUNTY,
    LUXI,
    LUXI_TECH,
    MORNING,
    SHIYAN,
    STUDENT_CAMERA,
    LessonRow,
    World,
    sample_value,
    wait_until,
)


def test_restarted_fleet_keeps_alerts_and_schedule(world: World) -> None:
    world.start_fleet()
    world.start_agent(SHIYAN)
    luxi = world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    first_start, second_start = MORNING + timedelta(minutes=15), MORNING + timedelta(minutes=60)
    first, second = world.import_lessons(
        LessonRow(first_start, "洞头区实验小学", ("洞头区鹿西乡小学",), subject="数学"),
        LessonRow(second_start, "洞头区实验小学", ("洞头区鹿西乡小学",), subject="科学"),
    )
    world.clock.set(first_start - timedelta(minutes=10))
    world.tick()
    wait_until("the first lesson ready",
               lambda: world.readiness(first).state is ReadinessState.READY)
    sent_before = {run.request_id for run in world.check_runs(first)}
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    world.wait_mail(LUXI_TECH, "firing")
    [alert] = world.alerts(rule="camera_missing")

    world.stop_fleet()
    # Down across the second lesson's lead time (09:50): its checks fell due meanwhile.
    world.clock.set(second_start - timedelta(minutes=9))
    fleet = world.start_fleet()

    [kept] = world.alerts(rule="camera_missing")
    assert (kept.id, kept.state, kept.device_id) == (alert.id, AlertState.FIRING, LUXI)
    # The fault is still there; the fleet hears so and keeps the same ticket.
    world.wait_fresh_telemetry(LUXI)
    world.tick()
    [still] = world.alerts(rule="camera_missing")
    assert (still.id, still.state) == (alert.id, AlertState.FIRING)

    def answered_runs() -> list[CheckRun] | None:
        runs = world.check_runs(second)
        return runs if runs and all(r.verdict for r in runs) else None

    answered = wait_until("the second lesson's checks answered", answered_runs,
                          between=world.tick)
    assert sorted((r.device_id, r.phase) for r in answered) == [(LUXI, "first"), (SHIYAN, "first")]
    verdicts = {r.device_id: r.verdict for r in answered}
    assert verdicts == {SHIYAN: "pass", LUXI: "fail"}  # the camera is still unplugged
    assert world.readiness(second).state is ReadinessState.NOT_READY
    # The first lesson's checks were not sent again.
    assert {run.request_id for run in world.check_runs(first)} == sent_before
    # Sent: acknowledged by the broker (the answers show they were; the count follows).
    wait_until("two checks acknowledged", lambda: sample_value(
        fleet.checks.samples(), "syncclass_checks_sent_total", phase="first") == 2)
    # Unacknowledged for 46 minutes it escalates, but the technician is not told of the
    # fault a second time.
    world.wait_mail(DONGTOU_COUNTY, "escalation", alert.id)
    assert len(world.mail_to(LUXI_TECH, "firing", alert.id)) == 1
