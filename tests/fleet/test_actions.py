"""Remote actions over a real Mosquitto: safety rules, forcing, rate limits, audit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent.contract import DEFAULT_PREFIX, Kind, RefusalReason, encode, topic
from fleet.actions.config import ActionConfig, RateLimit
from fleet.actions.outcomes import ActionRefused, Outcome, RefusalCode
from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from fleet.db.base import session_scope
from fleet.db.models import AuditAnswer, AuditEntry
from fleet.ingest import MqttIngest
from fleet.settings import ConfigError, section
from tests.clock import ManualClock
from tests.fleet.checks_helpers import (
    MONDAY_0800,
    MqttDevice,
    Relay,
    World,
    fleet_ingest,
    wait_until,
)

IN_LESSON = MONDAY_0800 + timedelta(minutes=10)
IN_LEAD = MONDAY_0800 - timedelta(minutes=20)
OUTSIDE = MONDAY_0800 - timedelta(hours=2)
UNITS = ("syncclass-agent", "pulseaudio")  # restartable, on the fleet and on the device


@dataclass
class Setup:
    world: World
    clock: ManualClock
    actions: Actions
    signer: Signer
    publisher: MqttIngest
    relay: Relay
    broker: Mosquitto
    tmp_path: Path

    def audit(self) -> list[AuditEntry]:
        with session_scope(self.world.sessions) as s:
            rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
            s.expunge_all()
            return rows

    def refused(self, *args: Any, **kwargs: Any) -> ActionRefused:
        with pytest.raises(ActionRefused) as err:
            self.actions.request(*args, **kwargs)
        return err.value


@pytest.fixture
def setup(broker: Mosquitto, tmp_path: Path) -> Iterator[Setup]:
    world = World.create(tmp_path)
    world.pair(MONDAY_0800)
    world.classroom("recv-9", ["r-off"], enabled=False)
    clock = ManualClock(OUTSIDE)
    signer = Signer.from_file(tmp_path / "fleet.key")
    relay = Relay()
    publisher = fleet_ingest(broker, world.sessions, [relay])
    actions = Actions(world.sessions, publisher, signer,
                      ActionConfig(allowed_units=UNITS), clock)
    yield Setup(world, clock, actions, signer, publisher, relay, broker, tmp_path)
    publisher.close()


@pytest.fixture
def device(setup: Setup) -> Iterator[MqttDevice]:
    dev = MqttDevice(setup.broker, "r-1", setup.signer.public_key_b64, setup.clock,
                     setup.tmp_path, allowed_units=UNITS)
    yield dev
    assert dev.forged == []
    dev.close()


def test_reboot_outside_lessons_is_executed_and_audited_with_the_answer(
    setup: Setup, device: MqttDevice
) -> None:
    setup.relay.sinks.append(setup.actions)  # the device's answer reaches the actions
    entry = setup.actions.request("tech-zhang", "r-1", "reboot")
    assert (entry.outcome, entry.actor, entry.action, entry.forced) == (
        "accepted", "tech-zhang", "reboot", False)
    assert entry.at == OUTSIDE and entry.id is not None
    command = device.next_command()
    assert (command["id"], command["name"], command["args"]) == (entry.command_id, "reboot", {})
    setup.clock.advance(seconds=20)
    device.result(command, ok=True, output="rebooting")
    assert wait_until(lambda: setup.audit()[0].outcome == "ok")
    [row] = setup.audit()
    assert row.reply is not None and row.reply["output"] == "rebooting"
    assert row.answered_at == OUTSIDE + timedelta(seconds=20)


def test_reboot_during_a_lesson_is_refused_and_never_sent(
    setup: Setup, device: MqttDevice
) -> None:
    setup.clock.set(IN_LESSON)
    refusal = setup.refused("tech-zhang", "r-1", "reboot")
    assert refusal.code is RefusalCode.IN_LESSON and refusal.http_status == 409
    assert "二年级数学（08:00–08:40）" in refusal.message_zh
    assert "in a synchronous lesson" in refusal.message_en
    [row] = setup.audit()
    assert (row.outcome, row.action, row.device_id, row.command_id) == (
        "refused", "reboot", "r-1", None)
    assert row.id == refusal.audit_id and row.detail.startswith("in_lesson: ")



def test_a_check_is_refused_inside_a_lesson_but_not_before_it(
    setup: Setup, device: MqttDevice
) -> None:
    """A check opens cameras and microphones and fills the uplink: not in the lesson."""
    setup.clock.set(IN_LESSON)
    refusal = setup.refused("tech-zhang", "r-1", "run-check")
    assert refusal.code is RefusalCode.IN_LESSON
    assert "二年级数学（08:00–08:40）" in refusal.message_zh
    forced = setup.actions.request("tech-zhang", "r-1", "run-check", force=True,
                                   reason="老师说麦克风没声音 / teacher reports no sound")
    assert device.next_command()["id"] == forced.command_id
    # In the lead window a re-run is how a technician sees a fix take effect.
    setup.clock.set(IN_LEAD)
    entry = setup.actions.request("tech-zhang", "r-1", "run-check")
    assert device.next_command()["id"] == entry.command_id
    assert [(r.action, r.outcome, r.forced) for r in setup.audit()] == [
        ("run-check", "refused", False), ("run-check", "accepted", True),
        ("run-check", "accepted", False)]


def test_restart_inside_the_lead_window_is_refused_at_both_ends(setup: Setup) -> None:
    setup.clock.set(IN_LEAD)
    for device_id in ("m-1", "r-1"):
        refusal = setup.refused("tech-li", device_id, "restart-service",
                                {"unit": "syncclass-agent"})
        assert refusal.code is RefusalCode.LEAD_WINDOW
        assert "08:00开始" in refusal.message_zh and "30 min" in refusal.message_en
    setup.clock.set(MONDAY_0800 + timedelta(minutes=40))  # the lesson has ended
    assert setup.actions.request("tech-li", "r-1", "restart-service",
                                 {"unit": "syncclass-agent"}).outcome == "accepted"


def test_forced_with_a_reason_is_accepted_and_audited_as_forced(
    setup: Setup, device: MqttDevice
) -> None:
    setup.clock.set(IN_LESSON)
    refusal = setup.refused("tech-zhang", "r-1", "reboot", force=True, reason="  ")
    assert refusal.code is RefusalCode.REASON_REQUIRED
    entry = setup.actions.request("tech-zhang", "r-1", "reboot", force=True,
                                  reason="画面卡死，老师要求重启 / frozen picture")
    assert device.next_command()["id"] == entry.command_id
    rows = setup.audit()
    assert [(r.outcome, r.forced) for r in rows] == [("refused", True), ("accepted", True)]
    assert rows[1].reason == "画面卡死，老师要求重启 / frozen picture"


def test_one_reboot_per_device_per_ten_minutes(setup: Setup) -> None:
    setup.actions.request("tech-zhang", "r-1", "reboot")
    setup.clock.advance(minutes=4)
    refusal = setup.refused("tech-li", "r-1", "reboot")
    assert refusal.code is RefusalCode.RATE_LIMITED and refusal.http_status == 429
    assert refusal.retry_after_s == 360
    assert "600秒内最多1次" in refusal.message_zh
    assert setup.actions.request("tech-li", "m-1", "reboot").outcome == "accepted"
    setup.clock.advance(minutes=6)
    assert setup.actions.request("tech-li", "r-1", "reboot").outcome == "accepted"
    assert [r.outcome for r in setup.audit()] == ["accepted", "refused", "accepted", "accepted"]


def test_set_expected_is_sent_during_a_lesson_and_not_rate_limited_for_the_fleet(
    setup: Setup, device: MqttDevice
) -> None:
    """Not disruptive: it changes what the agent reports, nothing the lesson uses."""
    setup.actions = Actions(setup.world.sessions, setup.publisher, setup.signer,
                            ActionConfig(limits=(RateLimit("actor", 1, 60.0),)), setup.clock)
    setup.clock.set(IN_LESSON)
    args = {"cameras": ["046d:082d:8A2B3C4D"], "speakers": []}
    sent = [setup.actions.request("inventory", "r-1", "set-expected", args, system=True)
            for _ in range(3)]
    for entry in sent:
        command = device.next_command()
        assert (command["id"], command["name"], command["args"]) == (
            entry.command_id, "set-expected", args)
    assert [(r.actor, r.action, r.outcome) for r in setup.audit()] == [
        ("inventory", "set-expected", "accepted")] * 3
    # A person asking the same is counted against their limit like any action.
    setup.actions.request("tech-li", "r-1", "set-expected", args)
    assert setup.refused("tech-li", "r-1", "set-expected", args).code is RefusalCode.RATE_LIMITED


def test_actions_per_actor_per_minute(setup: Setup) -> None:
    setup.actions = Actions(setup.world.sessions, setup.publisher, setup.signer,
                            ActionConfig(limits=(RateLimit("actor", 2, 60.0),)), setup.clock)
    for _ in range(2):
        setup.actions.request("script", "r-1", "run-check")
    assert setup.refused("script", "m-1", "run-check").code is RefusalCode.RATE_LIMITED
    assert setup.actions.request("tech-li", "m-1", "run-check").outcome == "accepted"
    setup.clock.advance(seconds=61)
    assert setup.actions.request("script", "m-1", "run-check").outcome == "accepted"


@pytest.mark.parametrize(
    ("device_id", "name", "args", "code", "status"),
    [
        ("nope", "reboot", {}, RefusalCode.UNKNOWN_DEVICE, 404),
        ("r-off", "reboot", {}, RefusalCode.DEVICE_DISABLED, 409),
        ("r-1", "restart-service", {"unit": "sshd"}, RefusalCode.UNIT_NOT_ALLOWED, 422),
        ("r-1", "restart-service", {}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "reboot", {"now": True}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "set-interval", {"seconds": 0}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "run-check", {"uplink": "yes"}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "run-check", {"lesson_id": 999}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "format-disk", {}, RefusalCode.UNKNOWN_ACTION, 422),
        ("r-1", "set-expected", {}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "set-expected", {"displays": ["HDMI-A-1"]}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "set-expected", {"cameras": "046d:082d:1"}, RefusalCode.BAD_ARGS, 422),
        ("r-1", "set-expected", {"cameras": ["a b"]}, RefusalCode.BAD_ARGS, 422),
    ],
)
def test_bad_requests_are_refused_and_audited(
    setup: Setup, device_id: str, name: str, args: dict[str, Any], code: RefusalCode,
    status: int
) -> None:
    refusal = setup.refused("tech-zhang", device_id, name, args)
    assert (refusal.code, refusal.http_status) == (code, status)
    assert refusal.message_zh and refusal.message_en
    [row] = setup.audit()
    assert (row.actor, row.device_id, row.action, row.args, row.outcome) == (
        "tech-zhang", device_id, name, args, "refused")
    assert row.detail == refusal.detail
    with pytest.raises(ValueError, match="actor"):
        setup.actions.request("", device_id, name, args)


def test_agent_refusal_and_silence_are_audited(setup: Setup, device: MqttDevice) -> None:
    restart = setup.actions.request("tech-zhang", "r-1", "restart-service", {"unit": "pulseaudio"})
    reboot = setup.actions.request("tech-zhang", "m-1", "reboot")
    command = device.next_command()
    assert command["args"] == {"unit": "pulseaudio"}
    setup.actions.on_cmd_result("r-1", {"id": command["id"], "ok": False, "seq": 3,
                                        "reason": "not-allowed", "message": "unit not listed"})
    setup.actions.on_cmd_result("m-1", {"id": command["id"], "ok": True, "seq": 4})  # spoof
    setup.clock.advance(minutes=5)
    assert setup.actions.tick() == 0
    setup.clock.advance(minutes=1)
    assert setup.actions.tick() == 1
    rows = {r.id: r for r in setup.audit()}
    assert (rows[restart.id].outcome, rows[restart.id].detail) == (
        "failed", "not-allowed: unit not listed")
    assert rows[reboot.id].outcome == "timeout"
    assert "no answer within 360 s" in rows[reboot.id].detail
    samples = {(s.name, tuple(s.labels.values())): s.value for s in setup.actions.samples()}
    assert samples[("syncclass_actions_accepted_total", ("restart-service",))] == 1
    assert samples[("syncclass_actions_answered_total", ("failed",))] == 1
    assert samples[("syncclass_actions_answered_total", ("timeout",))] == 1


def answers(setup: Setup, audit_id: int) -> list[tuple[bool, str, bool]]:
    """(ok, reason, settled) of each answer recorded for one audit entry, in order."""
    with session_scope(setup.world.sessions) as s:
        return [(a.ok, a.reason, a.settled) for a in s.scalars(
            select(AuditAnswer).where(AuditAnswer.audit_id == audit_id)
            .order_by(AuditAnswer.id))]


def test_a_replayed_command_refused_by_the_device_leaves_the_outcome_alone(
    setup: Setup, device: MqttDevice
) -> None:
    setup.relay.sinks.append(setup.actions)
    entry = setup.actions.request("tech-zhang", "r-1", "reboot")
    command = device.next_command()
    setup.clock.advance(seconds=20)
    device.result(command, ok=True, output="rebooting")
    assert wait_until(lambda: setup.audit()[0].outcome == "ok")
    # Someone who captured the signed command publishes it again: the device's own
    # verifier refuses the nonce, and the device says so in cmd/result as the agent does.
    setup.clock.advance(seconds=30)
    setup.publisher.publish(topic(DEFAULT_PREFIX, "r-1", Kind.CMD), encode(command))
    assert wait_until(lambda: device.forged)
    [(_, refusal)] = device.forged
    device.forged.clear()
    assert refusal.reason is RefusalReason.REPLAYED
    device.result(command, **refusal.result())
    assert wait_until(lambda: len(answers(setup, entry.id)) == 2)
    [row] = setup.audit()
    assert (row.outcome, row.detail, row.answered_at) == ("ok", "", OUTSIDE + timedelta(seconds=20))
    assert row.reply is not None and row.reply["output"] == "rebooting"
    assert answers(setup, entry.id) == [(True, "", True), (False, "replayed", False)]
    samples = {(s.name, tuple(s.labels.values())): s.value for s in setup.actions.samples()}
    assert samples[("syncclass_actions_late_answers_total", ("replayed",))] == 1
    assert samples[("syncclass_actions_answered_total", ("ok",))] == 1


def test_an_answer_after_the_timeout_is_recorded_and_the_timeout_stays(setup: Setup) -> None:
    entry = setup.actions.request("tech-zhang", "r-1", "reboot")
    setup.clock.advance(minutes=7)
    assert setup.actions.tick() == 1
    setup.actions.on_cmd_result("r-1", {"id": entry.command_id, "ok": True, "seq": 9})
    setup.actions.on_cmd_result("r-1", {"id": entry.command_id, "ok": True, "seq": 10})
    [row] = setup.audit()
    assert (row.outcome, row.reply, row.answered_at) == ("timeout", None, None)
    assert answers(setup, entry.id) == [(True, "", False), (True, "", False)]


def test_a_command_the_broker_connection_refuses_is_audited_as_failed(setup: Setup) -> None:
    # Disconnected, the ingest queues commands until its bounded queue is full; then the
    # connection refuses them.
    setup.publisher.close()
    with pytest.raises(ConnectionError):
        for _ in range(100_000):
            setup.publisher.publish(topic(DEFAULT_PREFIX, "r-1", Kind.CMD), b"{}")
    entry = setup.actions.request("tech-zhang", "r-1", "reboot")
    assert entry.outcome == Outcome.FAILED and "not sent" in entry.detail
    assert setup.audit()[0].outcome == "failed"


def test_refusals_are_counted(setup: Setup) -> None:
    setup.clock.set(IN_LESSON)
    setup.refused("tech-zhang", "r-1", "reboot")
    setup.refused("tech-zhang", "ghost", "reboot")
    samples = {(s.name, s.labels["code"]): s.value for s in setup.actions.samples()}
    assert samples == {("syncclass_actions_refused_total", "in_lesson"): 1,
                       ("syncclass_actions_refused_total", "unknown_device"): 1}


def test_action_config_from_toml_tables() -> None:
    config = section(ActionConfig, {
        "key_file": "/etc/syncclass/fleet.key",
        "allowed_units": ["syncclass-agent"],
        "limits": [{"scope": "device", "count": 2, "window_s": 900, "actions": ["reboot"]}],
    }, "actions")
    assert config.limits == (RateLimit("device", 2, 900.0, ("reboot",)),)
    assert config.key_file == Path("/etc/syncclass/fleet.key")
    with pytest.raises(ConfigError, match="scope"):
        section(ActionConfig, {"limits": [{"scope": "school", "count": 1, "window_s": 60}]},
                "actions")
    with pytest.raises(ConfigError) as err:
        section(ActionConfig, {"limits": [{"scope": "device", "count": 1}]}, "actions")
    assert err.value.key == "actions.limits[0].window_s"
