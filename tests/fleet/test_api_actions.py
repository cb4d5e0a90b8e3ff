"""Remote actions through the API with the real action service, signer and Mosquitto:
refused in a lesson's lead window with the reason shown, forced with a reason, audited;
the report interval changed during a lesson."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.contract import DEFAULT_PREFIX, Kind
from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from tests.fleet.api_world import NOW, World, world
from tests.fleet.checks_helpers import Sniffer, fleet_ingest, wait_until

__all__ = ["world"]

LUXI = "dongtou-luxi-sync1"


@pytest.fixture
def sniffer(world: World, broker: Mosquitto, tmp_path: Path) -> Iterator[Sniffer]:
    """Wires the real action service into the app; yields what reaches the broker."""
    publisher = fleet_ingest(broker, world.sessions, [])
    world.services.actions = Actions(
        world.sessions, publisher, Signer.from_file(tmp_path / "fleet.key"), clock=world.clock
    )
    sniff = Sniffer(broker, f"{DEFAULT_PREFIX}/dev/+/{Kind.CMD.value}")
    yield sniff
    sniff.close()
    publisher.close()


def test_reboot_in_lead_window_is_refused_then_forced(world: World, sniffer: Sniffer) -> None:
    world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(minutes=10))
    path = f"/api/v1/devices/{LUXI}/actions/reboot"
    refused = world.post("dt-luxi-tech", path, json={})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "lead_window"
    assert body["message_zh"] and body["message_en"]
    no_reason = world.post("dt-luxi-tech", path, json={"force": True})
    assert no_reason.status_code == 422
    forced = world.post(
        "dt-luxi-tech", path, json={"force": True, "reason": "摄像头死机 camera hung"}
    )
    assert forced.status_code == 202, forced.text
    entry = forced.json()
    assert (entry["outcome"], entry["forced"], entry["actor"]) == ("accepted", True, "dt-luxi-tech")
    assert wait_until(lambda: len(sniffer.payloads) == 1)
    command = json.loads(sniffer.payloads[0])
    assert (command["name"], command["device_id"], command["id"]) == (
        "reboot",
        LUXI,
        entry["command_id"],
    )
    audit = world.get("dt-luxi-tech", "/api/v1/audit").json()
    assert [(a["outcome"], a["forced"]) for a in audit] == [
        ("accepted", True),
        ("refused", True),
        ("refused", False),
    ]
    assert audit[2]["id"] == body["audit_id"]


def test_action_outside_scope_is_404_and_not_audited(world: World, sniffer: Sniffer) -> None:
    reply = world.post(
        "dt-luxi-tech", "/api/v1/devices/yueqing-shantou-sync1/actions/reboot", json={}
    )
    assert reply.status_code == 404
    assert world.get("admin", "/api/v1/audit").json() == []
    assert sniffer.payloads == []


def test_audit_is_scoped(world: World, sniffer: Sniffer) -> None:
    done = world.post(
        "yq-dianjiao", "/api/v1/devices/yueqing-shantou-sync1/actions/run-check", json={}
    )
    assert done.status_code == 202, done.text
    assert world.get("dt-luxi-tech", "/api/v1/audit").json() == []
    assert world.get("dt-luxi-tech", f"/api/v1/audit/{done.json()['id']}").status_code == 404
    assert [a["action"] for a in world.get("yq-dianjiao", "/api/v1/audit").json()] == ["run-check"]


def test_set_interval_in_a_lesson_is_sent_and_audited(world: World, sniffer: Sniffer) -> None:
    world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW - timedelta(minutes=5))
    path = f"/api/v1/devices/{LUXI}/actions/set-interval"
    for body in ({"seconds": 4}, {"seconds": 3601}, {"seconds": "often"}, {}):
        assert world.post("dt-luxi-tech", path, json=body).status_code == 422, body
    foreign = "/api/v1/devices/yueqing-shantou-sync1/actions/set-interval"
    assert world.post("dt-luxi-tech", foreign, json={"seconds": 30}).status_code == 404
    # Not disruptive: allowed during the lesson, unforced.
    done = world.post("dt-luxi-tech", path, json={"seconds": 30})
    assert done.status_code == 202, done.text
    entry = done.json()
    assert (entry["action"], entry["args"], entry["outcome"], entry["forced"]) == (
        "set-interval",
        {"seconds": 30},
        "accepted",
        False,
    )
    assert wait_until(lambda: len(sniffer.payloads) == 1)
    command = json.loads(sniffer.payloads[0])
    assert (command["name"], command["args"], command["id"]) == (
        "set-interval",
        {"seconds": 30},
        entry["command_id"],
    )
    audit = world.get("dt-luxi-tech", "/api/v1/audit").json()
    assert [(a["id"], a["action"]) for a in audit] == [(entry["id"], "set-interval")]
