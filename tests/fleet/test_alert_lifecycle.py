"""The ticket's life: up/down delays, flapping, reopen, acknowledgement, escalation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.contract import Kind
from fleet.alerts import AlertEngine, AlertNotFound, AlertStateError
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertEvent, AlertState, Lesson, LessonMode
from tests.fleet.alert_helpers import World, build_world, payload
from tests.fleet.pg import fresh_database


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def status(world: World, device: str, state: str, session: int = 1) -> None:
    world.send(Kind.STATUS, device, state=state, agent_version="1.0", session=session)


def alerts(world: World, **filters: object) -> list[Alert]:
    with session_scope(world.sessions) as s:
        rows = AlertEngine.query(s, **filters)  # type: ignore[arg-type]
        s.expunge_all()
        return rows


def events(world: World, alert_id: int) -> list[str]:
    with session_scope(world.sessions) as s:
        return list(s.scalars(
            select(AlertEvent.kind).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
        ))


def test_offline_fires_after_up_delay_and_resolves(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(10)
    assert alerts(world) == []  # inside the up-delay: not an alert yet
    assert [a.state for a in alerts(world, include_pending=True)] == [AlertState.PENDING]

    world.tick_after(25)  # 35 s > 30 s up-delay
    [alert] = alerts(world)
    assert alert.state is AlertState.FIRING and alert.rule == "device_offline"
    assert alert.classroom_id == world.rural_room
    assert world.notifications() == []  # still inside group_wait

    world.tick_after(30)
    fired = world.notifications("firing")
    assert {(n.channel, n.target) for n in fired} == {
        ("email", "lin@luxi.example.cn"),
        ("dingtalk", "http://127.0.0.1:9/rural-dingtalk"),
    }
    assert next(n for n in fired if n.channel == "dingtalk").payload["secret"] == "SECxyz"

    world.delivered("email")  # the robot's message never arrives
    status(world, "rural-1", "online")
    world.tick_after(10)
    assert alerts(world)[0].state is AlertState.FIRING  # down-delay 30 s not over
    world.tick_after(25)
    [alert] = alerts(world)
    assert alert.state is AlertState.RESOLVED and alert.resolved_at is not None
    world.tick_after(30)
    # "已恢复" only where the alert arrived: the technician's mailbox, not the robot.
    resolved = world.notifications("resolved")
    assert [(n.channel, n.target) for n in resolved] == [("email", "lin@luxi.example.cn")]
    assert resolved[0].payload["fallback"] == []  # the robot never had the alert either
    assert events(world, alert.id) == [
        "pending", "fired", "queued", "clearing", "resolved", "recovery_skipped", "queued"
    ]


def test_flapping_within_delays_sends_nothing(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(10)
    status(world, "rural-1", "online")  # back before the up-delay: never an alert
    world.tick_after(60)
    assert alerts(world, include_pending=True) == []

    status(world, "rural-1", "offline")
    world.tick_after(31)
    world.tick_after(31)
    assert len(world.notifications("firing")) == 2
    for _ in range(3):  # up and down, each time back before the down-delay ends
        status(world, "rural-1", "online")
        world.tick_after(10)
        status(world, "rural-1", "offline")
        world.tick_after(10)
    world.tick_after(60)
    [alert] = alerts(world)
    assert alert.state is AlertState.FIRING
    assert len(world.notifications()) == 2  # only the first firing, to two recipients


def test_fault_cleared_within_group_wait_is_never_sent(world: World) -> None:
    world.engine.config.down_delays["device_offline"] = 0.0
    status(world, "rural-1", "offline")
    world.tick_after(31)  # fires; its notice waits for group_wait
    status(world, "rural-1", "online")
    world.tick_after(1)
    world.tick_after(60)
    [alert] = alerts(world)
    assert alert.state is AlertState.RESOLVED
    assert world.notifications() == []


def test_reopen_within_window_reuses_the_ticket(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(31)
    status(world, "rural-1", "online")
    world.tick_after(31)
    [first] = alerts(world)
    assert first.state is AlertState.RESOLVED

    world.clock.advance(600)  # ten minutes later, inside the one-hour window
    status(world, "rural-1", "offline")
    world.tick_after(31)
    [again] = alerts(world)
    assert again.id == first.id and again.state is AlertState.FIRING
    assert again.reopen_count == 1 and again.resolved_at is None
    assert "reopened" in events(world, again.id)

    status(world, "rural-1", "online")
    world.tick_after(31)
    world.clock.advance(2 * 3600)  # outside the window: a new ticket
    status(world, "rural-1", "offline")
    world.tick_after(31)
    newest = alerts(world)[0]
    assert newest.id != first.id and newest.reopen_count == 0


def test_ack_with_comment_stops_reminders_and_escalation(world: World) -> None:
    with session_scope(world.sessions) as s:  # no lesson today: only the timers matter
        s.get_one(Lesson, world.lesson_id).cancelled = True
    status(world, "rural-1", "offline")
    world.tick_after(31)
    world.tick_after(31)
    [alert] = alerts(world)
    with pytest.raises(ValueError, match="comment"):
        world.engine.acknowledge(alert.id, "lin", "   ")
    world.engine.acknowledge(alert.id, "lin", "林老师去教室查看电源 / checking the power")
    world.tick_after(31)
    acked = world.notifications("acknowledged")
    assert acked and "林老师去教室查看电源" in acked[0].body and "lin" in acked[0].body

    for _ in range(4):
        world.tick_after(1800)  # two hours: past escalate_after and several reminders
    assert world.notifications("reminder") == []
    assert world.notifications("escalation") == []
    [alert] = alerts(world)
    assert alert.state is AlertState.ACKNOWLEDGED and alert.escalation_level == 0

    with pytest.raises(AlertNotFound):
        world.engine.acknowledge(9999, "lin", "x")
    world.engine.resolve_manually(alert.id, "lin", "换了电源适配器 / replaced the adapter")
    with pytest.raises(AlertStateError):
        world.engine.acknowledge(alert.id, "lin", "too late")


def test_unacknowledged_alert_reminds_and_escalates_to_the_county(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(31)
    world.tick_after(31)
    world.tick_after(900)  # escalate_after 15 min
    world.tick_after(31)
    escalated = world.notifications("escalation")
    assert {n.target for n in escalated} == {
        "lin@luxi.example.cn",
        "http://127.0.0.1:9/rural-dingtalk",
        "chen@dongtou.example.cn",  # the county 电教 contact
        "http://127.0.0.1:9/county-wecom",
    }
    assert "升级至县电教" in escalated[0].subject
    world.tick_after(1800)
    world.tick_after(31)
    reminders = world.notifications("reminder")
    assert "chen@dongtou.example.cn" in {n.target for n in reminders}


def test_still_failing_at_lesson_start_escalates(world: World) -> None:
    # 09:50 local: the town classroom's camera goes; the lesson is at 10:00.
    world.clock.advance(50 * 60)
    world.send(Kind.EVENT, "town-1", type="device_removed", entity="camera:cam0",
               message_zh="摄像头被拔出", message_en="camera unplugged")
    world.tick_after(31)
    [alert] = alerts(world)
    world.engine.acknowledge(alert.id, "zhao", "在路上 / on my way")
    world.tick_after(5 * 60)  # 09:55:31, still before the lesson
    assert alerts(world)[0].escalation_level == 0
    world.tick_after(5 * 60)  # 10:00:31, the lesson has started on a broken classroom
    [alert] = alerts(world)
    assert alert.escalation_level == 1
    # The escalation says which lesson: subject, time and the school at the other end.
    [why] = _texts(world, alert.id, "escalated")
    assert "课程开始时仍有故障：二年级数学 10:00 与 鹿西乡小学同步（上课中）" in why
    assert "Grade 2 Maths at 10:00 with 鹿西乡小学 (in progress)" in why
    world.tick_after(31)
    [*escalations] = world.notifications("escalation")
    assert escalations and all("二年级数学 10:00 与 鹿西乡小学同步（上课中）" in n.body
                               for n in escalations)


def test_a_recorded_lesson_does_not_need_its_main_classroom(world: World) -> None:
    with session_scope(world.sessions) as s:  # 录播: only the receivers play it
        s.get_one(Lesson, world.lesson_id).mode = LessonMode.RECORDED
    world.clock.advance(55 * 60)
    for device in ("town-1", "rural-1"):
        world.send(Kind.EVENT, device, type="device_removed", entity="camera:cam0")
    world.tick_after(6 * 60)  # 10:01
    levels = {a.device_id: a.escalation_level for a in alerts(world)}
    assert levels == {"town-1": 0, "rural-1": 1}


def _texts(world: World, alert_id: int, kind: str) -> list[str]:
    with session_scope(world.sessions) as s:
        return list(s.scalars(
            select(AlertEvent.text).where(AlertEvent.alert_id == alert_id, AlertEvent.kind == kind)
        ))


def test_late_last_will_of_an_old_session_is_ignored(world: World) -> None:
    status(world, "rural-1", "online", session=5)
    status(world, "rural-1", "offline", session=4)  # the broker's late LWT of session 4
    world.tick_after(60)
    assert alerts(world, include_pending=True) == []


def test_replayed_old_telemetry_does_not_reopen(world: World) -> None:
    bad = {"cameras": {"ok": False, "reason": "camera_missing", "devices": []}}
    good = {"cameras": {"ok": True, "devices": [{"id": "cam0", "ok": True}]}}
    old_time = world.clock()
    world.clock.advance(60)
    world.send(Kind.TELEMETRY, "rural-1", interval=30, sections=bad)
    world.tick_after(1)
    world.send(Kind.TELEMETRY, "rural-1", interval=30, sections=good)
    # A message spooled while the link was down, replayed late: older than the ticket's news.
    world.engine.on_telemetry("rural-1", payload(
        Kind.TELEMETRY, "rural-1", old_time, 1, interval=30, sections=bad
    ))
    world.tick_after(25)  # past the 20 s down-delay
    [alert] = alerts(world)
    assert alert.state is AlertState.RESOLVED


def test_life_cycle_on_postgresql(tmp_path: Path, postgres: str) -> None:
    """The same tickets, timers and mutes on the county/province database."""
    world = build_world(tmp_path, url=fresh_database(postgres, "alerts_lifecycle"))
    now = world.clock()
    world.engine.add_silence({"device_id": "town-1"}, now, now + timedelta(hours=1), "zhao")
    status(world, "rural-1", "offline")
    status(world, "town-1", "offline")
    world.tick_after(31)
    world.tick_after(31)
    rural, town = (only(world, d) for d in ("rural-1", "town-1"))
    assert rural.state is AlertState.FIRING and town.suppressed_by == "silence #1 by zhao"
    assert {n.target for n in world.notifications("firing")} == {
        "lin@luxi.example.cn", "http://127.0.0.1:9/rural-dingtalk"
    }
    world.engine.acknowledge(rural.id, "lin", "去看看 / on it")
    status(world, "rural-1", "online")
    world.tick_after(31)
    status(world, "rural-1", "offline")  # back within the reopen window
    world.tick_after(31)
    again = only(world, "rural-1")
    assert again.id == rural.id and again.reopen_count == 1
    assert again.state is AlertState.FIRING and again.acknowledged_by is None


def only(world: World, device: str) -> Alert:
    [alert] = alerts(world, device_id=device)
    return alert


def test_resolving_a_clearing_fault_by_hand_is_a_plain_resolution(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(31)
    status(world, "rural-1", "online")  # clearing: inside its down-delay
    [alert] = alerts(world)
    world.engine.resolve_manually(alert.id, "lin", "插好了网线 / cable back in")
    [alert] = alerts(world)
    assert (alert.state, alert.awaiting_device) == (AlertState.RESOLVED, False)


def test_a_hand_resolved_fault_unseen_for_a_reopen_window_is_news_again(world: World) -> None:
    status(world, "rural-1", "offline")
    world.tick_after(31)
    [first] = alerts(world)
    world.engine.resolve_manually(first.id, "lin", "送修 / sent for repair")
    status(world, "rural-1", "offline", session=1)  # still offline: absorbed
    world.tick_after(31)
    [first] = alerts(world)
    assert (first.state, first.awaiting_device, first.reopen_count) == (
        AlertState.RESOLVED, True, 0)
    world.clock.advance(2 * 3600)  # back from repair hours later, and offline again
    status(world, "rural-1", "offline", session=2)
    world.tick_after(31)
    newest, old = alerts(world)
    assert old.id == first.id and old.awaiting_device is False
    assert newest.state is AlertState.FIRING
