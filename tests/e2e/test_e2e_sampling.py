"""A microphone that goes silent between checks reaches the technician from the agent's
periodic sampling: no pre-class check is involved (issue 6, detection outside lessons)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from agent.hardware.scenario import Fault, default_scenario
from fleet.db.base import session_scope
from fleet.db.models import AlertState, CheckRun
from tests.e2e.world import LUXI, LUXI_TECH, MORNING, SHIYAN, LessonRow, World, wait_until

MICROPHONE = default_scenario().microphone[0].id


def test_a_silent_microphone_raises_its_alert_without_a_check(world: World) -> None:
    world.page_always()  # no lesson today: a microphone would be held until the next one
    world.start_fleet()
    luxi = world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    state = world.wait_fresh_telemetry(LUXI)
    [mic] = state.telemetry["sections"]["microphones"]["devices"]
    assert mic["ok"] is True and mic["sampled_at"]  # sampled at start, and fine

    luxi.apply(Fault("mic_silent", device=MICROPHONE))
    world.clock.advance(seconds=120)  # the agent's sample_every_s (default)
    alert = wait_until("the mic_silent alert", lambda: next(iter(world.alerts(rule="mic_silent")),
                                                           None), between=world.tick)
    assert (alert.device_id, alert.entity) == (LUXI, f"microphone:{MICROPHONE}")
    assert "麦克风无信号" in alert.summary_zh and "silent" in alert.summary_en
    mail = world.wait_mail(LUXI_TECH, "firing", alert.id)
    assert "麦克风无信号" in mail.message.get_content()
    # Found by sampling: no check was sent, and no check ticket exists.
    assert [a.rule for a in world.alerts()] == ["mic_silent"]
    with session_scope(world.running.sessions) as session:
        assert session.scalars(select(CheckRun)).all() == []

    # Fixed (the mute switch): the next sample clears it, again without a check.
    luxi.clear("mic_silent", MICROPHONE)
    world.clock.advance(seconds=120)

    def sampled_fine() -> bool:
        state = world.running.states.get(LUXI)
        mics = state.telemetry["sections"]["microphones"]["devices"] if state else []
        return bool(mics) and mics[0]["ok"] is True

    wait_until("a good sample in the fleet's state", sampled_fine)
    world.clock.advance(seconds=60)  # the alerts' down_delay_s: clear for a minute
    world.wait_fresh_telemetry(LUXI)
    wait_until("the alert to resolve", lambda: world.alerts(rule="mic_silent")[0].state
               is AlertState.RESOLVED, between=world.tick)


def test_near_a_lesson_the_agent_is_told_its_times_and_samples_nothing(world: World) -> None:
    """The real agent's birth lists the lesson-window capability, so the fleet's check
    names the lesson's times; inside the agent's quiet lead (15 min) the check answers
    from passive evidence and the periodic sampling pauses until the lesson ends."""
    world.start_fleet()
    world.start_agent(SHIYAN)
    world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    sampled_at = world.wait_fresh_telemetry(LUXI).telemetry["sections"]["microphones"][
        "devices"][0]["sampled_at"]
    start = MORNING + timedelta(minutes=30)
    [lesson] = world.import_lessons(LessonRow(start, "洞头区实验小学", ("洞头区鹿西乡小学",)))
    # The planner reads the births from the device state table, flushed every 5 s.
    world.running.states.flush()
    world.clock.set(start - timedelta(minutes=10))  # the e2e config's check lead
    world.tick()
    def answered() -> list[CheckRun] | None:
        runs = [r for r in world.check_runs(lesson) if r.verdict is not None]
        return runs if len(runs) == 2 else None

    runs = wait_until("both checks answered", answered, between=world.tick)
    for run in runs:
        assert run.verdict == "pass"
        [mic] = run.probes["microphones"]["devices"]
        assert mic["sampled"] is False and mic["sampled_at"] == sampled_at
        assert run.probes["bandwidth"]["sampled"] is False
    # Minutes later, still before the lesson: the periodic sampling keeps away too.
    world.clock.advance(seconds=240)
    mic = world.wait_fresh_telemetry(LUXI).telemetry["sections"]["microphones"]["devices"][0]
    assert mic["sampled"] is False and mic["sampled_at"] == sampled_at
