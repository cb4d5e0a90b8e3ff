"""Pre-class checks over a real Mosquitto: scheduling, answers, rechecks, readiness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from agent.commands import lesson_window, parse_args
from agent.contract import (
    CAP_LESSON_WINDOW,
    CAP_PASSIVE,
    DEFAULT_PREFIX,
    Kind,
    format_ts,
    parse_ts,
    subscription,
)
from fleet.actions.config import ActionConfig
from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from fleet.checks.config import CheckConfig
from fleet.checks.plan import load_ends
from fleet.checks.readiness import Readiness, ReadinessState, lesson_readiness
from fleet.checks.scheduler import CheckScheduler, Unanswered
from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.models import CheckRun, DeviceState, Lesson, LessonMode
from fleet.ingest import MqttIngest
from tests.clock import ManualClock
from tests.fleet.checks_helpers import (
    MONDAY_0800,
    MqttDevice,
    Relay,
    Sniffer,
    World,
    fleet_ingest,
    wait_until,
)

CAMERA_MISSING = {"level": "fail", "reason": "camera_missing", "message_zh": "摄像头未连接",
                  "message_en": "camera missing", "entity": "camera:usb-1"}


@dataclass
class Fleet:
    broker: Mosquitto
    world: World
    clock: ManualClock
    key_file: Path
    publisher: MqttIngest
    relay: Relay
    actions: Actions
    scheduler: CheckScheduler

    def restart(self) -> None:
        """A new fleet process on the same database and key: nothing kept in memory."""
        signer = Signer.from_file(self.key_file)
        self.actions = Actions(self.world.sessions, self.publisher, signer, ActionConfig(),
                               self.clock)
        self.scheduler = CheckScheduler(self.world.sessions, self.actions, self.scheduler.config,
                                        self.clock)

    def device(self, device_id: str) -> MqttDevice:
        # The device has just been enrolled: the ingest takes its answers from now on.
        self.publisher.reload_devices()
        return MqttDevice(self.broker, device_id, Signer.from_file(self.key_file).public_key_b64,
                          self.clock, self.key_file.parent)

    def at(self, minutes_before: float, seconds: float = 0) -> int:
        """Tick at 08:00 minus the given time; return how many checks were sent."""
        self.clock.set(MONDAY_0800 - timedelta(minutes=minutes_before, seconds=seconds))
        return self.scheduler.tick()

    def readiness(self, lesson_id: int) -> Readiness:
        with session_scope(self.world.sessions) as s:
            return lesson_readiness(s, s.get_one(Lesson, lesson_id), self.clock())

    def runs(self) -> list[CheckRun]:
        with session_scope(self.world.sessions) as s:
            runs = list(s.scalars(select(CheckRun).order_by(CheckRun.requested_at, CheckRun.id)))
            s.expunge_all()
            return runs


@pytest.fixture
def fleet(broker: Mosquitto, tmp_path: Path) -> Iterator[Fleet]:
    world = World.create(tmp_path)
    clock = ManualClock(MONDAY_0800 - timedelta(hours=1))
    key_file = tmp_path / "fleet.key"
    relay = Relay()
    publisher = fleet_ingest(broker, world.sessions, [relay])
    actions = Actions(world.sessions, publisher, Signer.from_file(key_file), ActionConfig(), clock)
    scheduler = CheckScheduler(world.sessions, actions,
                               CheckConfig(bandwidth_url="http://fleet.lan/api/v1/bandwidth"),
                               clock)
    yield Fleet(broker, world, clock, key_file, publisher, relay, actions, scheduler)
    publisher.close()


@pytest.fixture
def bridge(fleet: Fleet) -> Relay:
    """The devices' answers reach the fleet's scheduler and actions (without it, nothing)."""
    fleet.relay.sinks[:] = [fleet.scheduler, fleet.actions]
    return fleet.relay


def end_states(readiness: Readiness) -> dict[str | None, ReadinessState]:
    return {end.device_id: end.state for end in readiness.ends}


def test_healthy_lesson_becomes_ready(fleet: Fleet, bridge: Relay) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    main, recv = fleet.device("m-1"), fleet.device("r-1")
    assert fleet.readiness(lesson).state is ReadinessState.PENDING
    assert fleet.at(31) == 0, "nothing is due before the lead time"
    assert fleet.at(25) == 2
    cm, cr = main.next_command(), recv.next_command()
    assert main.forged == [] and recv.forged == []
    assert cm["name"] == cr["name"] == "run-check"
    assert cm["args"] == {"targets": {"peer": "r-1.lan"}, "need_up_mbps": 3.0,
                          "need_down_mbps": 1.2, "uplink": True, "lesson_id": lesson,
                          "bandwidth_url": "http://fleet.lan/api/v1/bandwidth"}
    assert cr["args"]["targets"] == {"peer": "m-1.lan"}
    assert (cr["args"]["need_up_mbps"], cr["args"]["need_down_mbps"]) == (1.2, 2.5)
    assert parse_ts(cm["expires_at"]) - parse_ts(cm["issued_at"]) == timedelta(minutes=3)
    assert fleet.readiness(lesson).state is ReadinessState.CHECKING

    main.check(cm, "pass")
    recv.check(cr, "pass")
    assert wait_until(lambda: fleet.readiness(lesson).state is ReadinessState.READY)
    runs = fleet.runs()
    assert {(r.device_id, r.phase, r.verdict) for r in runs} == {
        ("m-1", "first", "pass"), ("r-1", "first", "pass")}
    assert {r.request_id for r in runs} == {cm["id"], cr["id"]}
    assert all(r.answered_at == fleet.clock() for r in runs)
    assert fleet.at(24) == 0 and fleet.at(8) == 0, "a passed check is neither resent nor rechecked"
    main.close()
    recv.close()


def test_failing_end_is_not_ready_and_rechecked_at_ten_minutes(
    fleet: Fleet, bridge: Relay
) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    main, recv = fleet.device("m-1"), fleet.device("r-1")
    assert fleet.at(25) == 2
    cm, cr = main.next_command(), recv.next_command()
    main.check(cm, "pass")
    recv.check(cr, "fail", [CAMERA_MISSING])
    assert wait_until(lambda: fleet.readiness(lesson).state is ReadinessState.NOT_READY)
    ready = fleet.readiness(lesson)
    assert end_states(ready) == {"m-1": ReadinessState.READY, "r-1": ReadinessState.NOT_READY}
    receiving = next(e for e in ready.ends if e.role == "receiver")
    assert receiving.findings == [CAMERA_MISSING]
    assert ready.to_json()["label_zh"] == "未就绪"

    assert fleet.at(10, seconds=1) == 0, "the recheck waits for the second lead time"
    assert fleet.at(8) == 1
    again = recv.next_command()
    assert again["id"] != cr["id"] and again["args"] == cr["args"]
    assert main.commands.empty()
    while_rechecking = fleet.readiness(lesson)
    assert while_rechecking.state is ReadinessState.CHECKING
    assert next(e for e in while_rechecking.ends if e.device_id == "r-1").findings == [
        CAMERA_MISSING], "the last answer stays visible while the recheck is out"
    recv.check(again, "pass")
    assert wait_until(lambda: fleet.readiness(lesson).state is ReadinessState.READY)
    assert [(r.device_id, r.phase) for r in fleet.runs()][-1] == ("r-1", "recheck")
    assert fleet.at(3) == 0, "one recheck per end"
    main.close()
    recv.close()


def test_no_answer_makes_the_end_not_ready_then_rechecks(fleet: Fleet) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    assert fleet.at(25) == 2
    run_m = next(r for r in fleet.runs() if r.device_id == "m-1")
    fleet.scheduler.on_check("m-1", {"verdict": "warn", "probes": {}, "findings": [],
                                     "request_id": run_m.request_id})
    assert fleet.at(22, seconds=1) == 0
    assert fleet.readiness(lesson).state is ReadinessState.CHECKING, "3 min not yet over"
    fleet.at(22)
    ready = fleet.readiness(lesson)
    assert end_states(ready) == {"m-1": ReadinessState.WARN, "r-1": ReadinessState.NOT_READY}
    silent = next(e for e in ready.ends if e.device_id == "r-1")
    assert silent.verdict == "no_answer"
    assert [f["reason"] for f in silent.findings] == ["no_answer"]
    assert "未在3分钟内回复" in silent.findings[0]["message_zh"]
    assert fleet.at(8) == 1, "no_answer is rechecked; warn is not"
    assert [(r.device_id, r.phase) for r in fleet.runs()][-1] == ("r-1", "recheck")

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(s.labels.items())): s.value for s in fleet.scheduler.samples()}

    # Sent means acknowledged by the broker, which the network thread hears a moment later.
    assert wait_until(lambda: samples().get(
        ("syncclass_checks_sent_total", (("phase", "recheck"),))) == 1)
    assert samples()[("syncclass_checks_sent_total", (("phase", "first"),))] == 2
    assert samples()[("syncclass_checks_no_answer_total", ())] == 1
    assert samples()[("syncclass_checks_answered_total", (("verdict", "warn"),))] == 1


def test_late_answer_replaces_no_answer_and_spares_the_recheck(fleet: Fleet) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    fleet.at(25)
    fleet.at(21)
    assert fleet.readiness(lesson).state is ReadinessState.NOT_READY
    for run in fleet.runs():
        fleet.scheduler.on_check(run.device_id, {"verdict": "pass", "probes": {}, "findings": [],
                                                 "request_id": run.request_id})
    assert fleet.readiness(lesson).state is ReadinessState.READY
    assert fleet.at(8) == 0


def test_recorded_lesson_checks_only_receivers_without_uplink(fleet: Fleet) -> None:
    world = fleet.world
    world.classroom("main-1", ["m-1"])
    world.classroom("recv-1", ["r-1"])
    world.classroom("recv-2", ["r-2"])
    lesson = world.lesson(MONDAY_0800, "main-1", ["recv-1", "recv-2"], LessonMode.RECORDED)
    devices = {d: fleet.device(d) for d in ("m-1", "r-1", "r-2")}
    assert fleet.at(25) == 2
    for name in ("r-1", "r-2"):
        args = devices[name].next_command()["args"]
        assert args["uplink"] is False and args["targets"] == {}
        assert (args["need_up_mbps"], args["need_down_mbps"]) == (None, 2.5)
    assert devices["m-1"].commands.empty()
    assert {e.role for e in fleet.readiness(lesson).ends} == {"receiver"}
    for device in devices.values():
        device.close()


def test_live_lesson_with_two_receivers_tells_each_end_its_peers(fleet: Fleet) -> None:
    world = fleet.world
    world.classroom("main-1", ["m-1"])
    world.classroom("recv-1", ["r-1"])
    world.classroom("recv-2", ["r-2"])
    lesson = world.lesson(MONDAY_0800, "main-1", ["recv-1", "recv-2"])
    fleet.at(25)
    with session_scope(world.sessions) as s:
        ends = load_ends(s, [s.get_one(Lesson, lesson)])[lesson]
        args = {end.devices[0].id: fleet.scheduler.planner.args(end, ends) for end in ends}
    assert args["m-1"]["targets"] == {"peer-r-1": "r-1.lan", "peer-r-2": "r-2.lan"}
    assert args["m-1"]["need_down_mbps"] == pytest.approx(2.4), "one return video per receiver"
    assert args["r-2"]["targets"] == {"peer": "m-1.lan"}
    assert len(fleet.runs()) == 3


def ticks(fleet: Fleet, start_min: float, stop_min: float) -> list[int]:
    """Tick every 15 s from ``start_min`` to ``stop_min`` minutes before 08:00."""
    sent = []
    seconds = start_min * 60
    while seconds >= stop_min * 60:
        sent.append(fleet.at(0, seconds=seconds))
        seconds -= 15
    return sent


def test_fifty_lessons_at_eight_are_spread_over_the_window_and_survive_a_restart(
    fleet: Fleet,
) -> None:
    for n in range(50):
        fleet.world.pair(MONDAY_0800, n)
    sniffer = Sniffer(fleet.broker, subscription(DEFAULT_PREFIX, Kind.CMD))
    per_tick = ticks(fleet, 31, 27.5)  # up to 07:32:30 ...
    fleet.restart()  # ... then a new fleet process takes over mid-window
    per_tick += ticks(fleet, 27.25, 20)
    runs = fleet.runs()
    assert len(runs) == 100 and sum(per_tick) == 100, "every end once, none twice"
    assert len({(r.lesson_id, r.device_id) for r in runs}) == 100
    window_start = MONDAY_0800 - timedelta(minutes=30)
    offsets = [(r.requested_at - window_start).total_seconds() for r in runs]
    # Sent at the first 15-s tick at or after its due time, within lead .. lead-5min.
    assert min(offsets) >= 0 and max(offsets) <= 300
    per_minute = [sum(1 for o in offsets if m * 60 <= o < (m + 1) * 60 or o == 300 == (m + 1)
                      * 60) for m in range(5)]
    assert all(10 <= n <= 30 for n in per_minute), per_minute  # 20 expected in each
    assert max(per_tick) <= 15, per_tick  # 5 expected per 15 s
    assert wait_until(lambda: len(sniffer.payloads) == 100)
    assert {json.loads(p)["id"] for p in sniffer.payloads} == {r.request_id for r in runs}
    sniffer.close()


def test_restarted_fleet_sends_the_due_recheck_and_takes_late_answers(fleet: Fleet) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    fleet.at(25)
    first = {r.device_id: r.request_id for r in fleet.runs()}
    fleet.scheduler.on_check("r-1", {"verdict": "fail", "probes": {}, "findings": [],
                                     "request_id": first["r-1"]})
    fleet.restart()
    assert fleet.at(24) == 0, "the restarted fleet does not resend first checks"
    fleet.scheduler.on_check("m-1", {"verdict": "pass", "probes": {}, "findings": [],
                                     "request_id": first["m-1"]})
    assert fleet.at(7) == 1
    assert fleet.at(7) == 0
    fleet.restart()
    assert fleet.at(6) == 0
    assert fleet.readiness(lesson).state is ReadinessState.CHECKING


def test_a_refused_run_check_fails_the_end(fleet: Fleet, bridge: Relay) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    recv = fleet.device("r-1")
    fleet.at(25)
    command = recv.next_command()
    recv.result(command, ok=False, reason="expired", message="command expired")
    assert wait_until(lambda: end_states(fleet.readiness(lesson))["r-1"]
                      is ReadinessState.NOT_READY)
    finding = fleet.readiness(lesson).ends[1].findings[0]
    assert finding["reason"] == "check_refused" and "expired" in finding["message_en"]
    recv.close()


def test_answers_that_match_no_check_are_ignored_and_counted(fleet: Fleet) -> None:
    lesson = fleet.world.pair(MONDAY_0800)
    fleet.at(25)
    run_r = next(r for r in fleet.runs() if r.device_id == "r-1")
    answer: dict[str, Any] = {"verdict": "pass", "probes": {}, "findings": []}
    fleet.scheduler.on_check("m-1", answer | {"request_id": run_r.request_id})  # not its check
    fleet.scheduler.on_check("r-1", answer | {"request_id": "no-such-check"})
    fleet.scheduler.on_check("r-1", answer | {"request_id": None})  # a local check: not ours
    assert fleet.readiness(lesson).state is ReadinessState.CHECKING
    samples = {s.name: s.value for s in fleet.scheduler.samples()}
    assert samples["syncclass_checks_unmatched_total"] == 2


def test_manual_check_before_a_lesson_uses_its_args_and_counts_for_readiness(
    fleet: Fleet,
) -> None:
    fleet.actions = Actions(fleet.world.sessions, fleet.publisher,
                            Signer.from_file(fleet.key_file), ActionConfig(), fleet.clock,
                            run_check_args=fleet.scheduler.planner.args_for_device)
    lesson = fleet.world.pair(MONDAY_0800)
    recv = fleet.device("r-1")
    # In the lead window (inside the lesson a check is refused unless forced).
    fleet.clock.set(MONDAY_0800 - timedelta(minutes=5))
    entry = fleet.actions.request("tech-zhang", "r-1", "run-check")
    command = recv.next_command()
    assert command["id"] == entry.command_id
    assert command["args"]["targets"] == {"peer": "m-1.lan"}
    assert command["args"]["lesson_id"] == lesson
    fleet.scheduler.on_check("r-1", {"verdict": "pass", "probes": {}, "findings": [],
                                     "request_id": command["id"]})
    end = next(e for e in fleet.readiness(lesson).ends if e.device_id == "r-1")
    assert (end.state, end.phase) == (ReadinessState.READY, "manual")
    recv.close()


def test_two_fleet_processes_ticking_together_send_each_check_once(fleet: Fleet) -> None:
    fleet.world.pair(MONDAY_0800)
    sniffer = Sniffer(fleet.broker, subscription(DEFAULT_PREFIX, Kind.CMD))
    # The other process: its own engine and sessions on the same database.
    other_sessions = SessionFactory(bind=make_engine(str(fleet.world.sessions.kw["bind"].url)))
    other = CheckScheduler(other_sessions, fleet.actions, fleet.scheduler.config, fleet.clock)
    other_sent: list[int] = []

    def other_ticks_first(session: Session) -> None:
        # Process A has decided what is due; process B records and sends it first.
        if other_sent or not session.new:
            return  # once, at the commit of the due checks
        other_sent.append(other.tick())

    event.listen(fleet.world.sessions, "before_commit", other_ticks_first)
    assert fleet.at(25) == 0
    event.remove(fleet.world.sessions, "before_commit", other_ticks_first)
    assert other_sent == [2]
    assert fleet.at(24) == 0
    assert len(fleet.runs()) == 2
    assert wait_until(lambda: len(sniffer.payloads) == 2)
    sniffer.close()


def test_unanswered_lesson_checks_are_reported_once_each_the_recheck_as_final(
    fleet: Fleet,
) -> None:
    got: list[Unanswered] = []
    fleet.scheduler = CheckScheduler(fleet.world.sessions, fleet.actions, fleet.scheduler.config,
                                     fleet.clock, on_unanswered=got.extend)
    other = CheckScheduler(fleet.world.sessions, fleet.actions, fleet.scheduler.config,
                           fleet.clock, on_unanswered=got.extend)  # a second fleet process
    lesson = fleet.world.pair(MONDAY_0800)
    fleet.at(25)
    fleet.at(21)
    other.tick()  # the rows are taken: the other process reports nothing again
    assert sorted((u.device_id, u.lesson_id, u.phase, u.final) for u in got) == [
        ("m-1", lesson, "first", False), ("r-1", lesson, "first", False),
    ]
    assert "未在3分钟内回复" in got[0].message[0]
    got.clear()
    fleet.at(8)
    fleet.at(4)
    assert sorted((u.device_id, u.phase, u.final) for u in got) == [
        ("m-1", "recheck", True), ("r-1", "recheck", True),
    ]


def test_without_rechecks_of_silence_the_first_no_answer_is_final(fleet: Fleet) -> None:
    got: list[Unanswered] = []
    config = CheckConfig(recheck_verdicts=("fail",))
    fleet.scheduler = CheckScheduler(fleet.world.sessions, fleet.actions, config, fleet.clock,
                                     on_unanswered=got.extend)
    fleet.world.pair(MONDAY_0800)
    fleet.at(25)
    fleet.at(21)
    assert {(u.device_id, u.final) for u in got} == {("m-1", True), ("r-1", True)}


def test_only_agents_that_advertise_it_are_told_the_lesson_times(fleet: Fleet) -> None:
    """An older agent refuses an arg it does not know, so the lesson window goes only to
    agents whose birth lists the capability (kept in the device state's inventory)."""
    lesson = fleet.world.pair(MONDAY_0800)
    with session_scope(fleet.world.sessions) as s:
        s.add(DeviceState(device_id="r-1", inventory={
            "cameras": [], "agent": {"capabilities": [CAP_PASSIVE, CAP_LESSON_WINDOW]}}))
        s.add(DeviceState(device_id="m-1", inventory={"cameras": []}))
    main, recv = fleet.device("m-1"), fleet.device("r-1")
    assert fleet.at(25) == 2
    cm, cr = main.next_command(), recv.next_command()
    assert "lesson_starts_at" not in cm["args"] and "lesson_ends_at" not in cm["args"]
    assert (cr["args"]["lesson_id"], cr["args"]["lesson_starts_at"],
            cr["args"]["lesson_ends_at"]) == (lesson, format_ts(MONDAY_0800),
                                              format_ts(MONDAY_0800 + timedelta(minutes=40)))
    # The agent's own parser takes them (and refuses them from a fleet it cannot read).
    assert lesson_window(parse_args("run-check", cr["args"])) == (
        MONDAY_0800, MONDAY_0800 + timedelta(minutes=40))
    main.close()
    recv.close()
