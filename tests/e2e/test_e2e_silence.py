"""Silence is a fault too: a classroom that never connects, one that stops answering, an
agent the broker lets in but the inventory lacks; and a person's "resolved" on a fault
the device still reports.  Real agents, real Mosquitto, the wired fleet, real SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.contract import DEFAULT_PREFIX, Kind, topic
from agent.hardware.scenario import Fault
from fleet.broker import Mosquitto, device_acl
from fleet.db.models import Alert, AlertState
from tests.e2e.world import (
    DONGTOU_COUNTY,
    FLEET_PASSWORD,
    LUXI,
    LUXI_TECH,
    MORNING,
    PILOT_DEVICES,
    SHIYAN,
    STUDENT_CAMERA,
    LessonRow,
    World,
    device_password,
    sample_value,
    wait_until,
)
from tests.fleet.api_world import PASSWORD

# Has a broker account (its password works) but is in no inventory.
STRANGER = "dongtou-stranger-sync9"
ADMIN_MAIL = "admin@example.cn"  # the pilot inventory's admin
LESSON_START = MORNING + timedelta(minutes=30)  # 09:30
LESSON_TEXT = "二年级数学 09:30 与 洞头区实验小学同步"


@pytest.fixture
def e2e_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The e2e broker, plus one account the inventory does not know."""
    users = {"fleet": FLEET_PASSWORD,
             **{d: device_password(d) for d in (*PILOT_DEVICES, STRANGER)}}
    with Mosquitto(workdir=tmp_path / "mqtt", users=users, acl=device_acl(DEFAULT_PREFIX)) as mq:
        yield mq


def _lesson(world: World) -> int:
    row = LessonRow(LESSON_START, "洞头区实验小学", ("洞头区鹿西乡小学",))
    [lesson] = world.import_lessons(row)
    return lesson


def _expire_checks(world: World, lesson: int, minutes_before: float) -> None:
    """Send the checks due ``minutes_before`` the lesson; once every running agent has
    answered its own, pass the answer timeout."""
    world.clock.set(LESSON_START - timedelta(minutes=minutes_before))
    world.tick()
    wait_until("the running agents' answers", lambda: all(
        run.verdict is not None for run in world.check_runs(lesson)
        if run.device_id in world.agents
    ))
    world.clock.advance(seconds=61)  # answer_timeout_s is 60
    world.tick()


def _one(world: World, rule: str) -> Alert:
    return wait_until(f"one {rule} alert", lambda: next(iter(world.alerts(rule=rule)), None),
                      between=world.tick)


def _stop_agent(world: World, device_id: str) -> None:
    running = world.agents.pop(device_id)
    running.agent.stop()
    running.thread.join(timeout=10)


def test_never_connected_device_mails_its_technician_with_the_lesson_and_escalates(
    world: World,
) -> None:
    world.start_fleet()
    world.start_agent(SHIYAN)  # 鹿西's classroom PC never connects
    world.wait_reporting(SHIYAN)
    lesson = _lesson(world)

    _expire_checks(world, lesson, 10)  # the first check: 09:20, unanswered at 09:21:01
    alert = _one(world, "device_never_connected")
    assert (alert.device_id, alert.lesson_id, alert.state) == (LUXI, lesson, AlertState.FIRING)
    mail = world.wait_mail(LUXI_TECH, "firing", alert.id)
    assert mail.rcpt_tos == [LUXI_TECH]
    subject, body = str(mail.message["Subject"]), mail.message.get_content()
    for text in (subject, body):
        assert "洞头区鹿西乡小学" in text and "从未连接" in text and LESSON_TEXT in text
    assert "never connected" in body
    for advice in ("电源", "网络", "登记", "powered on", "network", "enrolled"):
        assert advice in body

    # The recheck goes unanswered too: the same ticket, not a second one or a new e-mail.
    _expire_checks(world, lesson, 5)
    assert [a.id for a in world.alerts()] == [alert.id]
    assert len(world.mail_to(LUXI_TECH, "firing")) == 1
    # Unacknowledged for escalate_after (300 s) since the technician was told: the county.
    escalation = world.wait_mail(DONGTOU_COUNTY, "escalation", alert.id)
    assert "从未连接" in escalation.message.get_content()
    assert world.alerts(rule="device_never_connected")[0].escalation_level == 1

    world.clock.advance(seconds=1)
    world.start_agent(LUXI)  # switched on at last
    world.wait_reporting(LUXI)
    resolved = wait_until("the ticket to resolve", lambda: [
        a for a in world.alerts(rule="device_never_connected") if a.state is AlertState.RESOLVED
    ], between=world.tick)
    assert [a.id for a in resolved] == [alert.id]
    world.wait_mail(LUXI_TECH, "resolved", alert.id)


def test_lesson_end_that_stops_answering_is_ticketed_with_the_lesson_until_it_answers(
    world: World,
) -> None:
    world.start_fleet()
    world.start_agent(SHIYAN)
    world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    lesson = _lesson(world)
    _stop_agent(world, LUXI)  # connected before, gone now

    _expire_checks(world, lesson, 10)
    # The first no-answer is followed by a recheck: nobody is called for it yet.
    assert world.alerts(rule="check_no_answer") == []
    _expire_checks(world, lesson, 5)
    alert = _one(world, "check_no_answer")
    assert (alert.device_id, alert.lesson_id, alert.state) == (LUXI, lesson, AlertState.FIRING)
    assert LESSON_TEXT in alert.summary_zh and "课前检测无应答" in alert.summary_zh
    assert "Grade 2 Maths at 09:30" in alert.summary_en
    # Its device is offline, and that ticket already tells the technician, lesson named:
    # the no-answer ticket is inhibited rather than a second e-mail stream for one fault.
    offline = _one(world, "device_offline")
    assert alert.suppressed_by is not None and "offline" in alert.suppressed_by
    mail = world.wait_mail(LUXI_TECH, "firing", offline.id)
    assert "设备离线" in mail.message.get_content() and LESSON_TEXT in mail.message.get_content()
    assert not world.mail_to(LUXI_TECH, "firing", alert.id)

    world.clock.advance(seconds=1)
    world.start_agent(LUXI)  # it comes back: a new connection answers for it
    world.wait_reporting(LUXI)
    answered = wait_until("the no-answer ticket to resolve", lambda: [
        a for a in world.alerts(rule="check_no_answer") if a.state is AlertState.RESOLVED
    ], between=world.tick)
    assert [a.id for a in answered] == [alert.id]


def test_unknown_agent_with_valid_credentials_is_listed_once_and_alerted_to_the_admins(
    world: World,
) -> None:
    fleet = world.start_fleet()
    world.start_agent(STRANGER)

    def listed() -> list[dict[str, object]]:
        rows: list[dict[str, object]] = client.get(
            "/api/v1/devices/unknown", headers=admin).json()
        return rows if rows and int(str(rows[0]["messages"])) >= 3 else []

    with TestClient(fleet.api) as client:
        token = client.post("/api/v1/auth/login",
                            json={"username": "admin", "password": PASSWORD}).json()
        admin = {"Authorization": f"Bearer {token['access_token']}"}
        for _ in range(3):  # several reporting intervals: a chatty agent
            world.clock.advance(seconds=1)
            [row] = wait_until("the stranger listed", listed, between=world.tick)
        assert row["device_id"] == STRANGER and row["disabled"] is False
        assert row["topic"] in {topic(DEFAULT_PREFIX, STRANGER, kind) for kind in Kind}
        # A school technician sees no placeless stranger.
        tech = client.post("/api/v1/auth/login",
                           json={"username": "dt-luxi-tech", "password": PASSWORD}).json()
        assert client.get("/api/v1/devices/unknown", headers={
            "Authorization": f"Bearer {tech['access_token']}"}).json() == []

    # One ticket, one e-mail to the admins (only they can enrol a device without a place).
    alert = _one(world, "device_not_enrolled")
    assert (alert.device_id, alert.classroom_id) == (STRANGER, None)
    assert [a.id for a in world.alerts()] == [alert.id]
    mail = world.wait_mail(ADMIN_MAIL, "firing", alert.id)
    body = mail.message.get_content()
    assert STRANGER in body and "设备清单中没有它" in body
    assert len(world.mail_to(ADMIN_MAIL, "firing")) == 1
    samples = list(fleet.mqtt.samples())
    assert sample_value(samples, "syncclass_ingest_refused_total", reason="unknown-device") >= 3
    assert sample_value(list(fleet.strangers.samples()), "syncclass_ingest_strangers") == 1


def test_resolve_by_hand_of_a_persisting_fault_waits_for_the_device(world: World) -> None:
    world.page_always()  # no lesson today: the camera would be held until the next one
    world.start_fleet()
    world.start_agent(SHIYAN)
    luxi = world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    alert = _one(world, "camera_missing")
    world.wait_mail(LUXI_TECH, "firing", alert.id)

    world.running.alerts.resolve_manually(alert.id, "dt-luxi-tech", "换了摄像头 / replaced")
    for _ in range(3):  # the camera is still reported missing, message after message
        world.wait_fresh_telemetry(LUXI)
        world.tick()
    [still] = world.alerts(rule="camera_missing")
    assert (still.id, still.state, still.awaiting_device) == (alert.id, AlertState.RESOLVED, True)
    assert still.started_at == alert.started_at and still.reopen_count == 0
    assert len(world.mail_to(LUXI_TECH, "firing")) == 1  # no reopening e-mail
    # Told it was closed by hand while still reported, not that it recovered.
    closed = world.wait_mail(LUXI_TECH, "closed", alert.id)
    assert "已人工关闭" in str(closed.message["Subject"])
    assert not world.mail_to(LUXI_TECH, "resolved")
    kinds = [e.kind for e in world.alert_events(alert.id)]
    assert "reopened" not in kinds and "returning" not in kinds

    luxi.clear("camera_unplugged", STUDENT_CAMERA)  # really fixed now: the device confirms
    wait_until("the device to confirm", lambda: not world.alerts(rule="camera_missing")[0]
               .awaiting_device, between=lambda: world.wait_fresh_telemetry(LUXI) and None)
    assert "confirmed" in [e.kind for e in world.alert_events(alert.id)]
    assert world.alerts(rule="camera_missing")[0].state is AlertState.RESOLVED
