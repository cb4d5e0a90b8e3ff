"""Alerts through the API: the real engine's alerts, acknowledged and resolved by hand with
a comment; silences; and lessons with readiness from the real check records."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from agent.contract import envelope
from tests.fleet.api_world import NOW, World, world

__all__ = ["world"]


def test_ack_flow_records_who_and_why(world: World) -> None:
    alert_id = world.take_offline("dongtou-luxi-sync1")
    listed = world.get("dt-luxi-tech", "/api/v1/alerts").json()
    assert [(a["id"], a["state"], a["rule"]) for a in listed] == [
        (alert_id, "firing", "device_offline")
    ]
    empty = world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": ""})
    assert empty.status_code == 422
    blank = world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "  "})
    assert blank.status_code == 422
    acked = world.post(
        "dt-luxi-tech",
        f"/api/v1/alerts/{alert_id}/ack",
        json={"comment": "叶老师去教室看 on my way"},
    )
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == "dt-luxi-tech"
    assert body["ack_comment"] == "叶老师去教室看 on my way"
    assert body["events"][-1]["kind"] == "acknowledged"
    # The county technician sees who is on it.
    county_view = world.get("dt-dianjiao", f"/api/v1/alerts/{alert_id}").json()
    assert county_view["acknowledged_by"] == "dt-luxi-tech"


def test_resolved_alert_cannot_be_acked_and_is_listed_by_state(world: World) -> None:
    alert_id = world.take_offline("dongtou-luxi-sync1")
    world.status("dongtou-luxi-sync1", "online", session_no=2)
    world.clock.advance(minutes=5)
    world.alerts.tick()
    assert world.get("admin", "/api/v1/alerts").json() == []
    resolved = world.get("admin", "/api/v1/alerts", params={"state": "resolved"}).json()
    assert [a["id"] for a in resolved] == [alert_id]
    late = world.post("admin", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "late"})
    assert late.status_code == 409


def test_resolve_by_hand_needs_a_comment_and_happens_once(world: World) -> None:
    alert_id = world.take_offline("dongtou-luxi-sync1")
    path = f"/api/v1/alerts/{alert_id}/resolve"
    acked = world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "在修"})
    assert acked.status_code == 200, acked.text
    for comment in ("", "   "):
        assert world.post("dt-luxi-tech", path, json={"comment": comment}).status_code == 422
    assert world.post("yq-dianjiao", path, json={"comment": "x"}).status_code == 404
    done = world.post("dt-luxi-tech", path, json={"comment": "设备已送修 sent for repair"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["state"] == "resolved"
    assert datetime.fromisoformat(body["resolved_at"]) == world.clock()
    last = body["events"][-1]
    assert (last["kind"], last["actor"], last["text"]) == (
        "resolved",
        "dt-luxi-tech",
        "设备已送修 sent for repair",
    )
    again = world.post("dt-dianjiao", path, json={"comment": "again"})
    assert again.status_code == 409
    assert "cannot resolve" in again.json()["detail"]
    assert world.get("dt-luxi-tech", "/api/v1/alerts").json() == []


def test_foreign_alert_cannot_be_acked(world: World) -> None:
    alert_id = world.take_offline("yueqing-shantou-sync1")
    reply = world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "x"})
    assert reply.status_code == 404
    assert world.get("admin", f"/api/v1/alerts/{alert_id}").json()["state"] == "firing"


def test_silences_are_pinned_to_what_the_person_looks_after(world: World) -> None:
    window = {
        "starts_at": NOW.isoformat(),
        "ends_at": (NOW + timedelta(hours=2)).isoformat(),
        "comment": "更换摄像头 replacing the camera",
    }
    mine = world.post(
        "dt-luxi-tech",
        "/api/v1/silences",
        json={"matchers": {"device_id": "dongtou-luxi-sync1"}, **window},
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["created_by"] == "dt-luxi-tech"
    for matchers in ({"device_id": "yueqing-shantou-sync1"}, {"rule": "device_offline"}):
        refused = world.post(
            "dt-luxi-tech", "/api/v1/silences", json={"matchers": matchers, **window}
        )
        assert refused.status_code == 403, matchers
    backwards = world.post(
        "admin",
        "/api/v1/silences",
        json={"matchers": {"rule": "disk_full"}, **window, "ends_at": NOW.isoformat()},
    )
    assert backwards.status_code == 422
    naive = world.post(
        "admin",
        "/api/v1/silences",
        json={"matchers": {"rule": "disk_full"}, **window, "starts_at": "2026-03-02T09:00:00"},
    )
    assert naive.status_code == 422
    assert [s["id"] for s in world.get("yq-dianjiao", "/api/v1/silences").json()] == []
    sid = mine.json()["id"]
    assert (
        world.client.delete(
            f"/api/v1/silences/{sid}", headers=world.headers("yq-dianjiao")
        ).status_code
        == 404
    )
    # The silence mutes the engine's alert for that device.
    world.take_offline("dongtou-luxi-sync1")
    alert = world.get("dt-luxi-tech", "/api/v1/alerts").json()[0]
    assert alert["suppressed_by"]
    assert (
        world.client.delete(
            f"/api/v1/silences/{sid}", headers=world.headers("dt-luxi-tech")
        ).status_code
        == 204
    )
    assert world.get("dt-luxi-tech", "/api/v1/silences").json() == []


def test_lessons_today_with_readiness_by_scope(world: World) -> None:
    at_ten = NOW + timedelta(minutes=30)
    ready = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], at_ten)
    failing = world.add_lesson("乐清市城南实验小学", ["乐清市大荆镇山头小学"], at_ten, "语文")
    later = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(hours=5))
    tomorrow = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(days=1))
    asked = NOW - timedelta(minutes=1)
    world.add_check(ready, "dongtou-shiyan-sync1", "pass", asked)
    world.add_check(ready, "dongtou-luxi-sync1", "warn", asked)
    world.add_check(failing, "yueqing-chengnan-sync1", "pass", asked)
    world.add_check(failing, "yueqing-shantou-sync1", "fail", asked)

    lessons = world.get("dt-luxi-tech", "/api/v1/lessons").json()
    assert [(x["id"], x["readiness"]["state"]) for x in lessons] == [
        (ready, "warn"),
        (later, "pending"),
    ]
    assert lessons[0]["main_classroom"]["school"] == "洞头区实验小学"
    assert {e["device_id"] for e in lessons[0]["readiness"]["ends"]} == {
        "dongtou-shiyan-sync1",
        "dongtou-luxi-sync1",
    }
    admin = world.get("admin", "/api/v1/lessons").json()
    assert {x["id"]: x["readiness"]["state"] for x in admin}[failing] == "not_ready"
    next_day = (NOW + timedelta(days=1)).date().isoformat()
    # "next" by the fleet's clock: both lessons at ten (one in a county the school
    # technician does not see), not the one at two.
    assert {x["id"]: x["timing"] for x in admin} == {
        ready: "next", failing: "next", later: "later"
    }
    tomorrows = world.get("admin", "/api/v1/lessons", params={"from": next_day}).json()
    assert [x["timing"] for x in tomorrows] == ["later"]  # today's lessons come before
    world.clock.advance(minutes=40)  # 10:10: the lessons at ten are in progress
    timing = {x["id"]: x["timing"] for x in world.get("admin", "/api/v1/lessons").json()}
    assert timing == {ready: "in_progress", failing: "in_progress", later: "next"}
    # One lesson asked for alone is told against the others the asker sees.
    assert world.get("dt-luxi-tech", f"/api/v1/lessons/{later}").json()["timing"] == "next"
    assert world.get("dt-luxi-tech", f"/api/v1/lessons/{tomorrow}").json()["timing"] == "later"
    world.clock.advance(minutes=40)  # 10:50: over
    assert world.get("admin", f"/api/v1/lessons/{ready}").json()["timing"] == "ended"
    ahead = world.get("dt-luxi-tech", "/api/v1/lessons", params={"from": next_day}).json()
    assert [x["id"] for x in ahead] == [tomorrow]
    assert world.get("dt-luxi-tech", f"/api/v1/lessons/{failing}").status_code == 404
    backwards = world.get(
        "admin", "/api/v1/lessons", params={"from": next_day, "to": NOW.date().isoformat()}
    )
    assert backwards.status_code == 422
    far = world.get("admin", "/api/v1/lessons", params={"from": "9999-12-31"})
    assert far.status_code == 422


def test_device_health_is_the_devices_open_alerts(world: World) -> None:
    """Health and alerts agree: the device reads "ok" only while none of its tickets is
    firing, and a firing critical alert is its problem, worst first."""
    device_id = "dongtou-luxi-sync1"
    world.status(device_id, "online")

    def health() -> dict[str, Any]:
        return dict(world.get("dt-luxi-tech", f"/api/v1/devices/{device_id}").json()["health"])

    seqs = itertools.count(1)

    def report(camera: dict[str, Any]) -> None:
        body = envelope(device_id, next(seqs), world.clock.advance(seconds=15)) | {
            "interval": 15, "sections": {"system": {"ok": True}, "cameras": camera}}
        world.states.on_telemetry(device_id, body)
        world.alerts.on_telemetry(device_id, body)
        world.alerts.tick()

    report({"ok": True, "devices": []})
    healthy = health()
    assert healthy["online"] is True and healthy["agent_version"] == "0.1.0"
    assert (healthy["status"], healthy["problems"]) == ("ok", [])
    report({"ok": False, "reason": "camera_missing", "message": "摄像头未连接 camera missing",
            "devices": []})
    firing = health()
    [alert] = world.get("dt-luxi-tech", "/api/v1/alerts").json()
    assert firing["status"] == "critical"
    assert firing["problems"] == [{
        "section": "camera", "reason": "camera_missing", "alert_id": alert["id"],
        "severity": "critical",
        "message": "摄像头未连接 camera missing：摄像头未连接 camera missing",
    }]
    # The camera is back: the device stays "critical" while its ticket is still open.
    report({"ok": True, "devices": []})
    assert health()["status"] == "critical"
    for _ in range(5):  # past the down-delay: resolved, and the device is ok again
        report({"ok": True, "devices": []})
    assert (health()["status"], health()["problems"]) == ("ok", [])
    # A device the ingest has not heard from yet has no health rather than a guess.
    town = world.get("dt-dianjiao", "/api/v1/devices/dongtou-shiyan-sync1").json()
    assert town["health"] is None
