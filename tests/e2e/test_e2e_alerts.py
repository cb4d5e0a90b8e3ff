"""An unplugged camera in a lesson's lead window reaches the school's own technician by
e-mail, with the lesson at stake; left unacknowledged, it escalates to the county's 电教
contact."""

from __future__ import annotations

from datetime import timedelta

from agent.hardware.scenario import Fault
from fleet.db.models import Alert, AlertState
from tests.e2e.world import (
    DONGTOU_COUNTY,
    LUXI,
    LUXI_TECH,
    MORNING,
    SHIYAN,
    SHIYAN_TECH,
    STUDENT_CAMERA,
    LessonRow,
    World,
    wait_until,
)


def _camera_alert_fires(world: World) -> Alert:
    """The 鹿西 classroom's student camera is unplugged 8 minutes before a lesson: inside
    its lead window (10 minutes here), where a camera matters."""
    world.start_fleet()
    world.start_agent(SHIYAN)
    luxi = world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    world.import_lessons(LessonRow(MORNING + timedelta(minutes=8), "洞头区实验小学",
                                   ("洞头区鹿西乡小学",), subject="数学", grade="二年级"))
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    return wait_until("the camera alert to fire",
                      lambda: next(iter(world.alerts(rule="camera_missing")), None),
                      between=world.tick)


def test_unplugged_camera_mails_the_schools_technician_with_the_lesson(world: World) -> None:
    alert = _camera_alert_fires(world)
    assert (alert.device_id, alert.state) == (LUXI, AlertState.FIRING)

    mail = world.wait_mail(LUXI_TECH, "firing")
    assert mail.rcpt_tos == [LUXI_TECH]  # 鹿西's appointed technician, and only them
    assert mail.message["X-Syncclass-Alert"] == str(alert.id)
    subject, body = str(mail.message["Subject"]), mail.message.get_content()
    for text in (subject, body):
        assert "洞头区鹿西乡小学" in text  # where
        assert "摄像头未连接" in text  # what
        assert "二年级数学 09:08 与 洞头区实验小学同步" in text  # the lesson at stake
    assert "Grade 2 Maths at 09:08 with 洞头区实验小学" in body
    assert "Student camera" in body and LUXI in body  # which camera, which classroom PC
    # The hot-plug event and the telemetry both report it: still one ticket (the lead
    # window's pre-class check, which fails on it, is a ticket of its own).
    assert [a.id for a in world.alerts() if a.rule != "check_failed"] == [alert.id]
    # Nobody else was told: not the town school's technician, not the county yet.
    addressed = {rcpt for m in world.smtp.messages for rcpt in m.rcpt_tos}
    assert addressed == {LUXI_TECH}
    assert SHIYAN_TECH not in addressed


def test_unacknowledged_alert_escalates_to_the_county(world: World) -> None:
    alert = _camera_alert_fires(world)
    world.wait_mail(LUXI_TECH, "firing")

    world.clock.advance(seconds=299)  # escalate_after is 300 s
    world.tick()
    assert not world.mail_to(DONGTOU_COUNTY, "escalation")
    assert world.alerts(rule="camera_missing")[0].escalation_level == 0

    world.clock.advance(seconds=2)
    mail = world.wait_mail(DONGTOU_COUNTY, "escalation")
    assert mail.rcpt_tos == [DONGTOU_COUNTY]
    assert "升级至县电教" in str(mail.message["Subject"])
    assert mail.message["X-Syncclass-Alert"] == str(alert.id)
    assert "二年级数学 09:08" in mail.message.get_content()
    # The technician hears of the escalation as well; the ticket says why it escalated.
    world.wait_mail(LUXI_TECH, "escalation")
    escalated = world.alerts(rule="camera_missing")[0]
    assert (escalated.id, escalated.escalation_level) == (alert.id, 1)
    assert escalated.state is AlertState.FIRING
    [event] = [e for e in world.alert_events(alert.id) if e.kind == "escalated"]
    assert "not acknowledged within 5 min" in event.text
