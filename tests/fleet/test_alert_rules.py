"""Rules: payloads to signals, and what a telemetry snapshot clears."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.contract import Kind
from agent.settings import ConfigError, section
from fleet.alerts import AlertConfig, AlertEngine
from fleet.alerts.rules import from_event, from_telemetry
from fleet.db.base import session_scope
from fleet.db.models import Alert, CheckRun
from tests.fleet.alert_helpers import World, build_world, payload

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def telemetry(sections: dict[str, Any]) -> dict[str, Any]:
    return payload(Kind.TELEMETRY, "d1", NOW, 1, interval=30, sections=sections)


def rules_of(sections: dict[str, Any]) -> set[tuple[str, str]]:
    observation, problems = from_telemetry("d1", telemetry(sections), NOW)
    assert problems == []
    return {(s.rule, s.entity) for s in observation.signals}


def test_each_section_maps_the_agents_reason_to_a_rule() -> None:
    sections = {
        "cameras": {"ok": False, "devices": [
            {"id": "c0", "ok": False, "reason": "camera_black", "message": "画面全黑"},
            {"id": "c1", "ok": False, "reason": "frozen"},
            {"id": "c2", "ok": True},
        ]},
        "microphones": {"ok": False, "reason": "microphone_missing", "devices": []},
        "speakers": {"ok": True, "devices": [{"id": "s0", "ok": True}]},
        "displays": {"ok": False, "devices": [{"id": "HDMI-1", "ok": False,
                                               "reason": "disconnected"}]},
        "network": {"ok": False, "dns_ms": 3, "targets": {
            "broker": {"ok": True, "rtt_ms": 5},
            "peer": {"ok": False, "reason": "network_loss_high", "loss_pct": 7.5},
        }},
        "bandwidth": {"ok": False, "reason": "up_low", "up_mbps": 1.1},
        "system": {"ok": False, "reason": "disk_full", "disk_pct": 97},
    }
    assert rules_of(sections) == {
        ("camera_black", "camera:c0"),
        ("camera_frozen", "camera:c1"),
        ("mic_missing", "microphone"),
        ("display_disconnected", "display"),
        ("network_loss", "target:peer"),
        ("bandwidth_low", ""),
        ("disk_full", ""),
    }
    observation, _ = from_telemetry("d1", telemetry(sections), NOW)
    loss = next(s for s in observation.signals if s.rule == "network_loss")
    assert loss.value == 7.5
    black = next(s for s in observation.signals if s.rule == "camera_black")
    assert black.message_zh == "画面全黑"


def test_an_unknown_reason_falls_back_to_the_sections_generic_rule() -> None:
    assert rules_of({"system": {"ok": False, "reason": "cpu_high"}}) == {("system_fault", "")}


def test_malformed_sections_are_skipped_and_reported_the_rest_counts() -> None:
    observation, problems = from_telemetry("d1", telemetry({
        "cameras": ["not", "an", "object"],
        "network": {"ok": False, "targets": ["x"]},
        "system": {"ok": False, "reason": "overheating", "temp_c": 95},
    }), NOW)
    assert len(problems) == 2 and "cameras" in problems[0]
    assert [s.rule for s in observation.signals] == ["overheating"]
    # Skipped sections cover nothing: their open alerts are left alone, not cleared.
    assert "camera_missing" not in observation.covers
    assert "overheating" in observation.covers


def test_events_use_the_same_ticket_as_telemetry() -> None:
    removed = from_event("d1", payload(Kind.EVENT, "d1", NOW, 2, type="device_removed",
                                       entity="camera:usb-1"), NOW)
    [signal] = removed.signals
    assert (signal.rule, signal.entity, signal.active) == ("camera_missing", "camera", True)
    assert signal.details["id"] == "usb-1"
    spool = from_event("d1", payload(Kind.EVENT, "d1", NOW, 3, type="spool_dropped",
                                     entity="spool"), NOW)
    assert spool.signals == ()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def only(world: World, rule: str) -> Alert:
    with session_scope(world.sessions) as s:
        [alert] = AlertEngine.query(s, rule=rule)
        s.expunge_all()
        return alert


def test_a_camera_that_vanishes_from_the_list_clears_its_alert(world: World) -> None:
    world.send(Kind.TELEMETRY, "rural-1", interval=30, sections={"cameras": {"ok": False,
               "devices": [{"id": "c0", "ok": False, "reason": "camera_black"}]}})
    world.tick_after(1)
    assert only(world, "camera_black").state == "firing"
    world.send(Kind.TELEMETRY, "rural-1", interval=30, sections={"cameras": {"ok": True,
               "devices": [{"id": "c1", "ok": True}]}})
    world.tick_after(21)
    assert only(world, "camera_black").state == "resolved"


def test_telemetry_without_a_section_leaves_its_alerts_alone(world: World) -> None:
    world.send(Kind.TELEMETRY, "rural-1", interval=30,
               sections={"system": {"ok": False, "reason": "disk_full"}})
    world.tick_after(1)
    world.send(Kind.TELEMETRY, "rural-1", interval=30, sections={"cameras": {"ok": True}})
    world.tick_after(60)
    assert only(world, "disk_full").state == "firing"


def test_failed_check_links_to_its_lesson_through_the_check_run(world: World) -> None:
    with session_scope(world.sessions) as s:
        s.add(CheckRun(request_id="cmd-1", lesson_id=world.lesson_id, device_id="rural-1",
                       phase="first", requested_at=world.clock()))
    # A reason no fault rule takes: the check's own ticket (a fault's would be the fault's).
    finding = {"level": "fail", "reason": "bandwidth_test_failed",
               "message_zh": "测速服务器无法连接", "message_en": "the test server refuses",
               "entity": "bandwidth:up"}
    world.send(Kind.CHECK, "rural-1", verdict="fail", probes={}, findings=[finding],
               request_id="cmd-1", lesson_id=world.lesson_id)
    world.tick_after(31)
    alert = only(world, "check_failed")
    assert alert.lesson_id == world.lesson_id
    assert alert.details["findings"] == [finding]
    assert "测速服务器无法连接" in alert.summary_zh and "test server" in alert.summary_en
    assert any("测速服务器无法连接" in n.body for n in world.notifications("firing"))

    world.send(Kind.CHECK, "rural-1", verdict="pass", probes={}, findings=[],
               request_id="cmd-2", lesson_id=None)
    world.tick_after(21)  # the world's down-delay
    assert only(world, "check_failed").state == "resolved"


def test_a_local_check_has_no_lesson(world: World) -> None:
    world.send(Kind.CHECK, "rural-1", verdict="fail", probes={}, findings=[], request_id=None)
    world.tick_after(1)
    assert only(world, "check_failed").lesson_id is None


def test_config_names_bad_keys_and_values() -> None:
    cfg = section(AlertConfig, {"group_wait_s": 10, "up_delays": {"device_offline": 60}},
                  "alerts")
    assert cfg.up_delay("device_offline") == 60 and cfg.up_delay("camera_black") == 0
    with pytest.raises(ConfigError, match=r"alerts\.group_wiat_s"):
        section(AlertConfig, {"group_wiat_s": 10}, "alerts")
    with pytest.raises(ConfigError, match="escalate_after_s"):
        section(AlertConfig, {"escalate_after_s": 0}, "alerts")
    with pytest.raises(ConfigError, match="webhook"):
        section(AlertConfig, {"webhooks": ["ftp://x"]}, "alerts")
    with pytest.raises(ConfigError, match="timezone"):
        section(AlertConfig, {"timezone": "Mars/Olympus"}, "alerts")


def test_samples_count_states_signals_and_notifications(world: World) -> None:
    world.send(Kind.EVENT, "rural-1", type="device_removed", entity="camera:c0")
    world.tick_after(31)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for s in world.engine.samples()}
    assert samples[("syncclass_alerts", (("state", "firing"),))] == 1
    assert samples[("syncclass_alert_signals_total", (("rule", "camera_missing"),))] == 1
    assert samples[("syncclass_alert_notifications_total",
                    (("channel", "email"), ("kind", "firing")))] == 1
