"""What people receive: grouping per classroom, bilingual texts with the lesson at stake."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete

from agent.contract import Kind
from fleet.alerts import AlertEngine
from fleet.db.base import session_scope
from fleet.db.models import Alert, County, Person, PersonSchool, School
from tests.fleet.alert_helpers import ALWAYS_PAGED, World, build_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def unplug(world: World, device: str, entity: str) -> None:
    world.send(Kind.EVENT, device, type="device_removed", entity=entity,
               message_zh="设备被拔出", message_en="unplugged")


def test_two_faults_of_one_classroom_go_out_as_one_message(world: World) -> None:
    unplug(world, "rural-1", "camera:cam0")
    world.tick_after(10)
    unplug(world, "rural-1", "microphone:mic0")
    world.tick_after(25)  # group_wait (30 s) of the first one is over
    fired = world.notifications("firing")
    assert len(fired) == 2  # one message to each recipient, not one per fault
    body = fired[0].body
    assert "摄像头未连接" in body and "麦克风未连接" in body
    assert "camera missing" in body and "microphone missing" in body
    assert "2 项告警" in fired[0].subject
    assert sorted(fired[0].payload["alert_ids"]) == sorted(
        a.id for a in _alerts(world)
    )


def test_faults_of_different_classrooms_are_separate_messages(world: World) -> None:
    unplug(world, "rural-1", "camera:cam0")
    unplug(world, "town-1", "camera:cam0")
    world.tick_after(31)
    bodies = [n.body for n in world.notifications("firing")]
    # The town school has no technician or robot: its alert is recorded as unrouted.
    assert bodies and all("鹿西乡小学" in b for b in bodies)
    town = next(a for a in _alerts(world) if a.device_id == "town-1")
    with session_scope(world.sessions) as s:
        kinds = [e.kind for e in s.get_one(Alert, town.id).events]
    assert "unrouted" in kinds


def test_texts_name_the_lesson_in_both_languages(world: World) -> None:
    unplug(world, "rural-1", "camera:cam0")  # 09:00; the lesson is 10:00 with the town school
    world.tick_after(31)
    [first, *_] = world.notifications("firing")
    zh = "二年级数学 10:00 与 洞头区实验小学同步：摄像头未连接"
    en = "Grade 2 Maths at 10:00 with 洞头区实验小学: camera missing"
    assert zh in first.subject and en in first.subject
    assert first.body.index(zh) < first.body.index(en)  # 简体中文 first
    assert "鹿西乡小学 三(1)班" in first.body
    [alert] = _alerts(world)
    # The ticket's own line names the classroom at fault first (lists show no header).
    assert alert.summary_zh.startswith(f"鹿西乡小学 三(1)班：{zh}")
    assert alert.summary_en.startswith(f"鹿西乡小学 三(1)班: {en}")


def test_no_lesson_within_the_horizon_means_no_lesson_in_the_text(world: World) -> None:
    world.clock.advance(3 * 3600)  # 12:00: the lesson is over
    unplug(world, "rural-1", "camera:cam0")
    world.tick_after(31)
    [first, *_] = world.notifications("firing")
    assert "数学" not in first.body and "摄像头未连接" in first.body


def test_recipients_dedupe_and_skip_inactive_people(world: World) -> None:
    with session_scope(world.sessions) as s:
        school = s.get_one(School, world.rural_school)
        helper = Person(username="he", name="何", role="school_tech", email="lin@luxi.example.cn")
        helper.schools.append(PersonSchool(school_id=school.id))
        gone = Person(username="old", name="旧", role="school_tech", email="old@x.cn",
                      active=False)
        gone.schools.append(PersonSchool(school_id=school.id))
        s.add_all([helper, gone])
    unplug(world, "rural-1", "camera:cam0")
    world.tick_after(31)
    targets = [n.target for n in world.notifications("firing")]
    assert sorted(targets) == ["http://127.0.0.1:9/rural-dingtalk", "lin@luxi.example.cn"]


def test_config_webhooks_hear_everything(tmp_path: Path) -> None:
    from fleet.alerts import AlertConfig

    world = build_world(tmp_path, AlertConfig(webhooks=["http://127.0.0.1:9/hook"],
                                              when=ALWAYS_PAGED))
    with session_scope(world.sessions) as s:
        s.execute(delete(PersonSchool))
        for county in s.query(County):
            county.wecom_webhook = None
        for school in s.query(School):
            school.dingtalk_webhook = None
    unplug(world, "rural-1", "camera:cam0")
    world.tick_after(31)
    [hook] = world.notifications("firing")
    assert (hook.channel, hook.target) == ("webhook", "http://127.0.0.1:9/hook")


def _alerts(world: World) -> list[Alert]:
    with session_scope(world.sessions) as s:
        rows = AlertEngine.query(s)
        s.expunge_all()
        return rows


def test_each_route_names_the_same_peoples_other_channels(world: World) -> None:
    with session_scope(world.sessions) as s:
        lin = s.query(Person).filter_by(username="lin").one()
        lin.phone = "13800000001"
    unplug(world, "rural-1", "camera:cam0")
    world.tick_after(31)
    sent = {n.channel: n for n in world.notifications("firing")}
    robot, mail = sent["dingtalk"], sent["email"]
    assert robot.payload["fallback"] == [
        {"channel": "email", "target": "lin@luxi.example.cn", "payload": {}}
    ]
    assert mail.payload["fallback"] == [{
        "channel": "dingtalk", "target": "http://127.0.0.1:9/rural-dingtalk",
        "payload": {"secret": "SECxyz", "at_mobiles": ["13800000001"]},
    }]
    # What a digest orders by: the most severe of the group, the lesson at stake.
    [alert] = _alerts(world)
    assert robot.payload["severity"] == alert.severity
    assert robot.payload["lesson_at"] == "2026-11-23T02:00:00+00:00"  # 10:00 in Wenzhou
    assert robot.payload["classroom_id"] == world.rural_room
