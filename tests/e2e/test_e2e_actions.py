"""A reboot during a lesson is refused and audited; one after it is executed by the
agent and audited with the agent's answer; a replay of it is refused by the agent and
audited beside it, leaving its outcome alone."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from agent.contract import DEFAULT_PREFIX, Kind, topic
from fleet.actions.outcomes import ActionRefused, Outcome, RefusalCode
from fleet.db.base import session_scope
from fleet.db.models import AuditEntry
from tests.e2e.world import (
    FLEET_PASSWORD,
    LUXI,
    MORNING,
    SHIYAN,
    LessonRow,
    World,
    wait_until,
)
from tests.fleet.api_world import PASSWORD


def _audit(world: World, device_id: str) -> list[AuditEntry]:
    with session_scope(world.running.sessions) as session:
        rows = list(session.scalars(
            select(AuditEntry).where(AuditEntry.device_id == device_id).order_by(AuditEntry.id)
        ))
        session.expunge_all()
        return rows


def test_reboot_refused_in_lesson_and_executed_after_it(world: World, tmp_path: Path) -> None:
    fleet = world.start_fleet()
    reboots = tmp_path / "luxi-reboots.log"  # the classroom PC's "reboot": one line each
    world.start_agent(SHIYAN)
    world.start_agent(LUXI, reboot_command=["sh", "-c", f"echo reboot >> {reboots}"])
    world.wait_reporting(SHIYAN, LUXI)
    start = MORNING - timedelta(minutes=5)  # under way: 08:55-09:35
    world.import_lessons(LessonRow(start, "洞头区实验小学", ("洞头区鹿西乡小学",)))

    with pytest.raises(ActionRefused) as refused:
        fleet.actions.request("dt-luxi-tech", LUXI, "reboot")
    assert refused.value.code is RefusalCode.IN_LESSON
    assert "08:55–09:35" in refused.value.message_zh

    world.clock.set(start + timedelta(minutes=41))  # the lesson is over
    accepted = fleet.actions.request("dt-luxi-tech", LUXI, "reboot")
    assert accepted.outcome == Outcome.ACCEPTED.value

    wait_until("the agent's answer in the audit log",
               lambda: _audit(world, LUXI)[-1].outcome != Outcome.ACCEPTED.value)
    wait_until("the reboot command to run", reboots.exists)
    # Executed once: the refused request never left the fleet.
    assert reboots.read_text().splitlines() == ["reboot"]

    first, second = _audit(world, LUXI)
    assert (first.id, first.actor, first.action) == (refused.value.audit_id, "dt-luxi-tech",
                                                      "reboot")
    assert first.outcome == Outcome.REFUSED.value
    assert first.detail.startswith("in_lesson")
    assert first.command_id is None and first.reply is None
    assert second.outcome == Outcome.OK.value
    assert (second.id, second.actor, second.action) == (accepted.id, "dt-luxi-tech", "reboot")
    assert second.command_id == accepted.command_id
    assert second.reply is not None
    assert (second.reply["id"], second.reply["ok"]) == (accepted.command_id, True)
    assert second.answered_at == world.clock()


class _Wiretap:
    """Someone on the broker who records every command sent to one device."""

    def __init__(self, world: World, device_id: str) -> None:
        self.commands: list[bytes] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="wiretap")
        self.client.username_pw_set("fleet", FLEET_PASSWORD)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(
            topic(DEFAULT_PREFIX, device_id, Kind.CMD), qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.commands.append(bytes(msg.payload))
        self.client.connect("127.0.0.1", world.broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the wiretap did not subscribe"

    def replay(self, payload: bytes, device_id: str) -> None:
        self.client.publish(topic(DEFAULT_PREFIX, device_id, Kind.CMD), payload,
                            qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_replayed_reboot_is_refused_and_audited_beside_the_original(
    world: World, tmp_path: Path
) -> None:
    fleet = world.start_fleet()
    reboots = tmp_path / "luxi-reboots.log"
    world.start_agent(LUXI, reboot_command=["sh", "-c", f"echo reboot >> {reboots}"])
    world.wait_reporting(LUXI)
    wiretap = _Wiretap(world, LUXI)
    try:
        accepted = fleet.actions.request("dt-luxi-tech", LUXI, "reboot")
        wait_until("the agent's answer", lambda: _audit(world, LUXI)[-1].outcome == "ok")
        [captured] = wait_until("the command on the wire", lambda: wiretap.commands)
        world.clock.advance(seconds=30)  # still inside the command's validity
        wiretap.replay(captured, LUXI)
        wait_until("the refusal of the replay",
                   lambda: len(_audit(world, LUXI)[-1].answers) == 2)
    finally:
        wiretap.close()

    assert reboots.read_text().splitlines() == ["reboot"]  # the replay did nothing
    [entry] = _audit(world, LUXI)
    assert (entry.id, entry.outcome, entry.detail) == (accepted.id, "ok", "")
    assert entry.reply is not None and entry.reply["ok"] is True
    first, replayed = entry.answers
    assert (first.ok, first.settled, first.received_at) == (True, True, entry.answered_at)
    assert (replayed.ok, replayed.reason, replayed.settled) == (False, "replayed", False)
    assert "already used" in replayed.message
    assert replayed.received_at == world.clock()

    # The API's audit listing shows the original outcome and both answers.
    with TestClient(fleet.api) as client:
        login = client.post("/api/v1/auth/login",
                            json={"username": "dt-luxi-tech", "password": PASSWORD})
        assert login.status_code == 200, login.text
        listing = client.get("/api/v1/audit", headers={
            "Authorization": f"Bearer {login.json()['access_token']}"}).json()
    assert [(a["id"], a["outcome"]) for a in listing] == [(accepted.id, "ok")]
    assert [(a["ok"], a["reason"], a["settled"]) for a in listing[0]["answers"]] == [
        (True, "", True), (False, "replayed", False)]
