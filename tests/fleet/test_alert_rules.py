"""Rules: payloads to signals, and what a telemetry snapshot clears."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import contract
from agent.contract import REASONS, Kind
from fleet.alerts import AlertConfig, AlertEngine
from fleet.alerts.rules import from_event, from_telemetry, rule_for_reason
from fleet.alerts.signal import FLEET_RULES, RULES
from fleet.db.base import session_scope
from fleet.db.models import Alert, CheckRun
from fleet.settings import ConfigError, section
from tests.fleet.alert_helpers import World, build_world, payload

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def telemetry(sections: dict[str, Any]) -> dict[str, Any]:
    return payload(Kind.TELEMETRY, "d1", NOW, 1, interval=30, sections=sections)


def rules_of(sections: dict[str, Any]) -> set[tuple[str, str]]:
    observation, problems = from_telemetry("d1", telemetry(sections), NOW)
    assert problems == []
    return {(s.rule, s.entity) for s in observation.signals}


def test_each_section_maps_the_agents_reason_to_a_rule() -> None:
    """v1 sections (reasons on the items, as a v1 agent sends them) through the catalogue."""
    sections = {
        "cameras": {"ok": False, "devices": [
            {"id": "c0", "ok": False, "reason": "camera_black",
             "message": "画面全黑 / picture is black"},
            {"id": "c1", "ok": False, "reason": "camera_frozen"},
            {"id": "c2", "ok": True},
        ]},
        "microphones": {"ok": False, "reason": "microphone_missing", "devices": []},
        "speakers": {"ok": True, "devices": [{"id": "s0", "ok": True}]},
        "displays": {"ok": False, "devices": [{"id": "HDMI-1", "ok": False,
                                               "reason": "display_disconnected"}]},
        "network": {"ok": False, "dns_ms": 3, "targets": {
            "broker": {"ok": True, "rtt_ms": 5},
            "peer": {"ok": False, "reason": "network_loss_high", "loss_pct": 7.5},
        }},
        "bandwidth": {"ok": False, "reason": "bandwidth_up_low", "up_mbps": 1.1},
        "system": {"ok": False, "reason": "disk_full", "disk_pct": 97, "clock_synced": False},
    }
    assert rules_of(sections) == {
        ("camera_black", "camera:c0"),
        ("camera_frozen", "camera:c1"),
        ("mic_missing", "microphone"),
        ("display_disconnected", "display"),
        ("network_loss", "target:peer"),
        ("bandwidth_low", ""),
        ("disk_full", ""),
        ("clock_unsynced", ""),  # a v1 clock_synced of false is v2's warning, which alerts
    }
    observation, _ = from_telemetry("d1", telemetry(sections), NOW)
    black = next(s for s in observation.signals if s.rule == "camera_black")
    assert (black.message_zh, black.message_en) == ("画面全黑", "picture is black")


def found(level: str, reason: str, entity: str, value: float | None = None) -> dict[str, Any]:
    return {"level": level, "reason": reason, "message_zh": reason, "message_en": reason,
            "entity": entity, "value": value}


def test_v2_findings_alert_on_failures_and_on_the_warnings_the_catalogue_names() -> None:
    observation, problems = from_telemetry("d1", telemetry({
        "system": {"ok": True, "findings": [found("warn", "clock_unsynced", "system"),
                                            found("warn", "disk_full", "system", 88.0),
                                            found("warn", "cpu_high", "system", 95.0)]},
        "network": {"ok": False, "targets": {}, "findings": [
            found("fail", "network_loss_high", "target:peer", 7.5),
            found("warn", "network_rtt_high", "target:broker", 120.0)]},
        "microphones": {"ok": True, "devices": [], "findings": [
            found("warn", "microphone_busy", "microphone:m0")]},
    }), NOW)
    assert problems == []
    assert {(s.rule, s.entity, s.value) for s in observation.signals} == {
        ("clock_unsynced", "", None), ("network_loss", "target:peer", 7.5)}
    # The sections came whole: a warning-only rule they report on clears when it stops.
    assert {"clock_unsynced", "disk_full", "network_rtt", "mic_silent"} <= observation.covers
    # Bandwidth is measured by checks only: the telemetry's repeat of it clears nothing.
    repeat, _ = from_telemetry("d1", telemetry({"bandwidth": {"ok": True, "up_mbps": 9.0,
                                                              "findings": []}}), NOW)
    assert repeat.covers == frozenset()


def test_a_broken_probes_section_raises_probe_failed_and_clears_nothing() -> None:
    observation, _ = from_telemetry("d1", telemetry({
        "cameras": {"ok": False, "reason": "probe_timeout", "message": "超时 / timed out",
                    "findings": [found("fail", "probe_timeout", "probe:cameras")]}}), NOW)
    assert [(s.rule, s.entity) for s in observation.signals] == [("probe_failed", "probe:cameras")]
    assert "camera_black" not in observation.covers  # nothing is known of the cameras


@pytest.mark.parametrize("reason", ["frozen", "disconnected", "up_low", "cpu_high_none_down"])
def test_reasons_are_looked_up_never_matched_by_words(reason: str) -> None:
    """What the substring rules once took: words in a reason open no ticket."""
    assert rule_for_reason(reason) is None
    assert rules_of({"system": {"ok": False, "reason": reason},
                     "cameras": {"ok": False, "devices": [{"id": "c", "ok": False,
                                                           "reason": reason}]}}) == set()


def test_every_rule_is_fed_by_a_real_reason_or_raised_by_the_fleet() -> None:
    fed = {r.rule for r in REASONS.values() if r.rule is not None}
    assert fed <= set(RULES), fed - set(RULES)
    assert set(RULES) - fed == FLEET_RULES
    assert all(rule_for_reason(name) == r.rule for name, r in REASONS.items())


def test_malformed_sections_are_dropped_at_decode_the_rest_counts() -> None:
    body = {**contract.envelope("d1", 1, NOW), "interval": 30, "sections": {
        "cameras": ["not", "an", "object"],
        "network": {"ok": False, "targets": ["x"]},
        "system": {"ok": False, "reason": "overheat", "temp_c": 95},
    }}
    decoded = contract.decode_message("d1", Kind.TELEMETRY, contract.encode(body))
    assert [reason for reason, _ in decoded.dropped] == ["bad-type", "bad-type"]
    observation, problems = from_telemetry("d1", decoded.payload, NOW)
    assert problems == []
    assert [s.rule for s in observation.signals] == ["overheating"]
    # Dropped sections cover nothing: their open alerts are left alone, not cleared.
    assert "camera_missing" not in observation.covers
    assert "overheating" in observation.covers


def test_a_section_the_rules_meet_malformed_is_skipped_and_reported() -> None:
    """Payloads that did not come through the decoder (none should) still cannot crash."""
    observation, problems = from_telemetry("d1", {"sections": {
        "cameras": ["not", "an", "object"],
        "system": {"ok": True, "findings": [found("warn", "clock_unsynced", "system")]}}}, NOW)
    assert len(problems) == 1 and "cameras" in problems[0]
    assert [s.rule for s in observation.signals] == ["clock_unsynced"]


def test_events_use_the_same_ticket_as_telemetry() -> None:
    removed = from_event("d1", payload(Kind.EVENT, "d1", NOW, 2, type="device_removed",
                                       entity="camera:usb-1"), NOW)
    [signal] = removed.signals
    assert (signal.rule, signal.entity, signal.active) == ("camera_missing", "camera", True)
    assert signal.details["id"] == "usb-1"
    spool = from_event("d1", payload(Kind.EVENT, "d1", NOW, 3, type="spool_dropped",
                                     entity="spool"), NOW)
    assert spool.signals == ()



def test_a_target_this_pc_cannot_measure_is_its_own_fault_not_the_targets() -> None:
    """No ICMP permission makes the agent report the target unreachable with the finding's
    reason: one network_fault ticket, as the telemetry's finding, not target_unreachable
    beside it; a plain unreachable target, and its return, stay target_unreachable."""
    def event(kind: str, reason: str | None) -> tuple[str, str, bool]:
        detail = {"host": "127.0.0.1", "rtt_ms": None, "loss_pct": None, "reason": reason}
        [signal] = from_event("d1", payload(Kind.EVENT, "d1", NOW, 4, type=kind,
                                            entity="target:fleet", detail=detail), NOW).signals
        return signal.rule, signal.entity, signal.active

    assert event("target_unreachable", "icmp_not_permitted") == (
        "network_fault", "target:fleet", True)
    assert event("target_unreachable", "target_unreachable") == (
        "target_unreachable", "target:fleet", True)
    assert event("target_unreachable", "camera_black")[0] == "target_unreachable"  # not a target's
    assert event("target_unreachable", None)[0] == "target_unreachable"  # an older agent
    assert event("target_reachable", None) == ("target_unreachable", "target:fleet", False)

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
