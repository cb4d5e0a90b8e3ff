"""The fault matrix: every fault the simulated classroom can inject, end to end.

Real agents on the simulated backend, a real Mosquitto with production's per-device
accounts, the wired fleet, a real SMTP server and the independent DingTalk receiver, in
one shared world whose clock the rows move forward in turn.  For each fault kind: exactly
one ticket of the expected rule on the expected entity, one e-mail to the school's
technician, and clearing the fault resolves that ticket.  Faults that should alert nobody
are rows too: they must leave no ticket.  Also: a failed lesson check landing on the
ticket of the fault it names, a check finding with no fault rule, a classroom that never
connects before its lesson's check, one that stops answering, an unknown agent with valid
broker credentials, and a refused mailbox falling back to the school's DingTalk robot.

Every rule of the fleet's table is reached by a row or named in :data:`GAPS` with why.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.contract import DEFAULT_PREFIX
from agent.hardware.scenario import Fault, SimNetwork, default_scenario
from agent.hardware.simulated import SimulatedHardware
from fleet.alerts.signal import RULES
from fleet.broker import Mosquitto
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertState, Classroom, School
from fleet.dynsec import DynsecAdmin
from tests.e2e.world import (
    FLEET_PASSWORD,
    LUXI,
    LUXI_TECH,
    PILOT_DEVICES,
    SHIYAN,
    SHIYAN_TECH,
    STUDENT_CAMERA,
    TZ,
    LessonRow,
    World,
    device_password,
    wait_until,
)
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver

MICROPHONE = default_scenario().microphone[0].id
SPEAKER = default_scenario().speaker[0].id
DISPLAY = default_scenario().display[0].id
STRANGER = "dongtou-stranger-sync9"  # a broker account the inventory does not list
ADMIN_MAIL = "admin@example.cn"
LUOYANG, ZHULI = "taishun-luoyang2-sync1", "taishun-zhuli-sync1"  # never switched on
LUOYANG_TECH, ZHULI_TECH = "tech@luoyang2.example.cn", "tech@zhuli.example.cn"
SAMPLE_EVERY_S = 120  # the agent's default sample_every_s: cameras and mics between checks
REFUSAL = "550 5.1.1 mailbox unavailable"


@dataclass(frozen=True)
class Row:
    """One injected fault and the ticket it must make (``rule`` None: no ticket)."""

    kind: str
    rule: str | None
    entity: str = ""
    device: str = ""  # the faulty device's id or host; "" for the whole classroom
    value: float | None = None
    sampled: bool = False  # seen only by the periodic sampling of cameras and mics

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.value:g}" if self.value is not None else self.kind


# What each fault kind does to the 鹿西 classroom between lessons (telemetry every
# interval, pictures and sound sampled every SAMPLE_EVERY_S).  The bandwidth faults are
# measured only by a lesson check: see test_lesson_checks_*.
ROWS = (
    Row("camera_unplugged", "camera_missing", "camera", STUDENT_CAMERA),
    Row("camera_black", "camera_black", f"camera:{STUDENT_CAMERA}", STUDENT_CAMERA,
        sampled=True),
    Row("camera_frozen", "camera_frozen", f"camera:{STUDENT_CAMERA}", STUDENT_CAMERA,
        sampled=True),
    Row("mic_unplugged", "mic_missing", "microphone", MICROPHONE),
    Row("mic_silent", "mic_silent", f"microphone:{MICROPHONE}", MICROPHONE, sampled=True),
    Row("mic_clipping", "mic_clipping", f"microphone:{MICROPHONE}", MICROPHONE, sampled=True),
    Row("speaker_unplugged", "speaker_missing", "speaker", SPEAKER),
    Row("display_disconnected", "display_disconnected", "display", DISPLAY),
    Row("packet_loss", "network_loss", "target:fleet", value=30),
    Row("packet_loss", "target_unreachable", "target:fleet", value=100),
    Row("rtt", "network_rtt", "target:fleet", value=900),
    Row("jitter", "network_jitter", "target:fleet", value=200),
    Row("disk_full", "disk_full"),
    Row("overheat", "overheating"),
    # Nothing a technician must do: no ticket.
    Row("dns_failure", None),  # the classroom's targets are addresses, not names
    Row("device_in_use", None, device=STUDENT_CAMERA),  # the lesson's app holds it
    Row("cpu_busy", None),  # a warning on the page, not an alert
    # A warning the catalogue makes alert: lesson times drift with the clock.
    Row("clock_unsynced", "clock_unsynced"),
)

#: Rules no row reaches, and why.  Each is a promise to the reader, not an xfail: the
#: test below fails when a rule is neither reached nor listed here.
GAPS: dict[str, str] = {
    "device_silent": "needs an agent hung behind a live connection; the simulated backend "
                     "cannot hang the agent (tests/fleet/test_state.py covers the rule)",
    "device_cloned": "needs two PCs sharing one identity (tests/fleet/test_clone_alert.py)",
    "clock_skew": "needs an agent whose clock is off the fleet's "
                  "(tests/e2e/test_e2e_clock.py runs one)",
    "camera_fault": "camera_capture_failed: the simulated camera never fails a capture",
    "mic_fault": "microphone_capture_failed: the simulated microphone never fails a capture",
    "network_fault": "icmp_not_permitted / dns_slow: the simulated network has neither",
    "camera_stream_failed": "the simulated scenario has no network cameras",
    "av_host_unreachable": "the e2e agents are configured with no encoders or recording hosts",
    "avgear_fault": "stream_unsupported / ffmpeg_missing: not in the simulated backend",
    "probe_failed": "the simulated backend cannot make a probe crash or hang",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    robot = WebhookReceiver().start()
    try:
        yield robot
    finally:
        robot.stop()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def matrix(
    tmp_path_factory: pytest.TempPathFactory, pilot_db: Path, mailbox: SmtpServer,
    receiver: WebhookReceiver,
) -> Iterator[World]:
    """One world for every row: the 洞头 pair's agents reporting, the pilot inventory."""
    workdir = tmp_path_factory.mktemp("fault-matrix")
    (workdir / "fleet.db").write_bytes(pilot_db.read_bytes())
    with Mosquitto(workdir=workdir / "mqtt", dynsec=True) as broker:
        admin = DynsecAdmin(broker.admin_login)
        admin.ensure_fleet_client(DEFAULT_PREFIX, "fleet", FLEET_PASSWORD)
        for device_id in (*PILOT_DEVICES, STRANGER):
            admin.put_device(DEFAULT_PREFIX, device_id, device_password(device_id))
        world = World(workdir, broker, mailbox)
        # The rows run between lessons, where a lesson's faults are held: every rule pages
        # whenever it fires (tests/fleet/test_alert_windows.py tests the holding).
        world.page_always()
        # Lesson checks before the agents' quiet lead (15 min): they measure bandwidth.
        world.config = replace(world.config, checks=replace(
            world.config.checks, lead_minutes=20, recheck_lead_minutes=16))
        receiver.state.clock = world.clock
        try:
            world.start_fleet()
            world.start_agent(SHIYAN)
            world.start_agent(LUXI)
            world.wait_reporting(SHIYAN, LUXI)
            yield world
        finally:
            world.close()


def _hardware(world: World, device_id: str) -> SimulatedHardware:
    hardware = world.agents[device_id].agent.hardware
    assert isinstance(hardware, SimulatedHardware)
    return hardware


def _tickets(world: World, rule: str, device_id: str) -> list[Alert]:
    """The device's tickets of ``rule``, pending ones too."""
    with session_scope(world.running.sessions) as session:
        found = world.running.alerts.query(session, rule=rule, device_id=device_id,
                                           include_pending=True)
        session.expunge_all()
        return found


def _open(world: World) -> list[Alert]:
    return [a for a in world.alerts() if a.state is not AlertState.RESOLVED]


def _fired(world: World, rule: str, device_id: str) -> Alert:
    """Wait for the ticket to exist, then let its up-delay pass: it fires."""
    wait_until(f"a {rule} ticket for {device_id}", lambda: _tickets(world, rule, device_id),
               between=world.tick)
    world.clock.advance(seconds=world.config.alerts.up_delay(rule) + 1)
    world.tick()
    [alert] = _tickets(world, rule, device_id)
    assert alert.state is AlertState.FIRING, alert.state
    return alert


def _resolved(world: World, alert: Alert, device_id: str, sampled: bool = False) -> None:
    """The fault is gone: once the fleet sees it clear (at the next sample for a sampled
    one), the rule's down-delay passes and the ticket resolves."""
    if sampled:
        world.clock.advance(seconds=SAMPLE_EVERY_S)

    def now() -> Alert:
        return next(a for a in _tickets(world, str(alert.rule), device_id) if a.id == alert.id)

    wait_until(f"{alert.rule} seen clear", lambda: now().clear_since is not None
               or now().state is AlertState.RESOLVED, between=world.tick)
    world.clock.advance(seconds=world.config.alerts.down_delay(str(alert.rule)) + 1)
    world.tick()
    assert now().state is AlertState.RESOLVED


def _one_mail(world: World, address: str, alert: Alert) -> None:
    """One e-mail about the ticket, in words a technician reads: the school and classroom
    at fault, what to do in both languages, and no internal names."""
    mail = world.wait_mail(address, "firing", alert.id)
    assert mail.rcpt_tos == [address]
    assert len(world.mail_to(address, "firing", alert.id)) == 1
    subject, body = str(mail.message["Subject"]), mail.message.get_content()
    if alert.classroom_id is not None:
        with session_scope(world.running.sessions) as session:
            school = session.scalars(select(School.name).join(Classroom).where(
                Classroom.id == alert.classroom_id)).one()
        assert f"{school} 同步课堂教室" in subject and f"{school} 同步课堂教室" in body
    assert "建议：" in body and "advice: " in body
    for internal in ("target:", "fleet：", "fleet:", "peer"):
        assert internal not in subject and internal not in body, internal


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_fault(matrix: World, row: Row) -> None:
    world, luxi = matrix, _hardware(matrix, LUXI)
    assert _open(world) == [], "the previous row left a ticket open"
    before = {a.id for a in world.alerts()}
    luxi.apply(Fault(row.kind, device=row.device, value=row.value))
    if row.sampled:
        world.clock.advance(seconds=SAMPLE_EVERY_S)
    if row.rule is None:
        for _ in range(3):  # every kind of report, twice over, has come and gone
            world.wait_fresh_telemetry(LUXI)
            world.tick()
        assert [a.rule for a in _tickets_since(world, before)] == []
        luxi.clear(row.kind, row.device)
        return

    alert = _fired(world, row.rule, LUXI)
    assert alert.entity == row.entity
    assert [(a.rule, a.entity) for a in _tickets_since(world, before)] == [(row.rule, row.entity)]
    _one_mail(world, LUXI_TECH, alert)

    luxi.clear(row.kind, row.device)
    _resolved(world, alert, LUXI, row.sampled)


def _tickets_since(world: World, before: set[int]) -> list[Alert]:
    """Tickets opened since ``before`` or still open, pending ones too, except a pending
    device_silent: moving the stopped clock makes every agent look silent until its next
    message, which clears it inside its up-delay (an hour in the e2e config)."""
    with session_scope(world.running.sessions) as session:
        found = world.running.alerts.query(session, include_pending=True)
        session.expunge_all()
    return [a for a in found
            if (a.id not in before or a.state is not AlertState.RESOLVED)
            and not (a.rule == "device_silent" and a.state is AlertState.PENDING)]


def test_a_refused_mailbox_falls_back_to_the_schools_dingtalk_robot(
    matrix: World, mailbox: SmtpServer, receiver: WebhookReceiver
) -> None:
    world = matrix
    with session_scope(world.running.sessions) as session:
        school = session.scalars(select(School).where(School.name == "洞头区实验小学")).one()
        school.dingtalk_webhook = receiver.url("/dingtalk/robot/send?access_token=shiyan")
    mailbox.refuse(SHIYAN_TECH, REFUSAL)
    try:
        shiyan = _hardware(world, SHIYAN)
        shiyan.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
        alert = _fired(world, "camera_missing", SHIYAN)
        robot = wait_until("the robot's message", lambda: [
            r for r in receiver.requests if r.accepted], between=world.tick)
        assert len(robot) == 1
        assert "洞头区实验小学" in robot[0].json["markdown"]["text"]
        assert not world.mail_to(SHIYAN_TECH, "firing")
        failed = wait_until("the refusal in the ticket's history", lambda: [
            e.text for e in world.alert_events(alert.id) if e.kind == "delivery_failed"])
        assert "550" in failed[0] and "fell back to: dingtalk" in failed[0]
        shiyan.clear("camera_unplugged", STUDENT_CAMERA)
        _resolved(world, alert, SHIYAN)
    finally:
        mailbox.accept(SHIYAN_TECH)


def _check_lesson(world: World, lessons: list[int], start: datetime, minutes_before: int) -> None:
    """The checks due ``minutes_before`` ``start`` go out; the running agents answer; the
    answer timeout passes for those that do not."""
    world.running.states.flush()  # the planner reads the agents' births from the table
    sent_at = start - timedelta(minutes=minutes_before)
    world.clock.set(sent_at)
    world.tick()

    def answered() -> bool:
        runs = [r for lesson in lessons for r in world.check_runs(lesson)
                if r.device_id in world.agents and r.requested_at >= sent_at]
        return all(r.verdict is not None for r in runs)  # written when the tick sent them

    wait_until("the running agents' answers", answered, between=world.tick)
    world.clock.advance(seconds=world.config.checks.answer_timeout_s + 1)
    world.tick()


def test_lesson_checks_land_on_fault_tickets_and_silence_is_a_fault(matrix: World) -> None:
    """Lesson 1: a bandwidth fault its check finds is the bandwidth ticket, with the lesson;
    a check finding with no fault rule (the test server refuses) is the check's own
    ticket; the Taishun classrooms, never connected, are ticketed to their technicians.
    Lesson 2: a main end gone away is offline, and its unanswered recheck a ticket of its
    own; both end when it reconnects.  The checks go out 20 and 16 minutes ahead, before
    the agents' quiet lead (15 min), so they measure rather than look on."""
    world = matrix
    first = (world.clock() + timedelta(minutes=30)).replace(second=0, microsecond=0)
    second = first + timedelta(hours=1)
    ids = world.import_lessons(
        LessonRow(first, "洞头区实验小学", ("洞头区鹿西乡小学",)),
        LessonRow(first, "泰顺县罗阳第二小学", ("泰顺县竹里乡小学",)),
        LessonRow(second, "洞头区实验小学", ("洞头区鹿西乡小学",)),
    )
    luxi, shiyan = _hardware(world, LUXI), _hardware(world, SHIYAN)
    before = {a.id for a in world.alerts()}

    luxi.apply(Fault("bandwidth_up", value=0.5))
    shiyan.scenario = replace(shiyan.scenario, network=SimNetwork(http=True))
    _check_lesson(world, ids[:2], first, 20)
    bandwidth = _fired(world, "bandwidth_low", LUXI)
    assert (bandwidth.entity, bandwidth.lesson_id) == ("", ids[0])
    _one_mail(world, LUXI_TECH, bandwidth)
    lesson = f"二年级数学 {first.astimezone(TZ):%H:%M} 与 洞头区实验小学同步"
    assert lesson in world.mail_to(LUXI_TECH, "firing", bandwidth.id)[0].message.get_content()
    check = _fired(world, "check_failed", SHIYAN)
    assert check.lesson_id == ids[0]
    assert {f["reason"] for f in check.details["findings"]} == {"bandwidth_test_failed"}
    _one_mail(world, SHIYAN_TECH, check)
    never = {d: _fired(world, "device_never_connected", d) for d in (LUOYANG, ZHULI)}
    assert {a.lesson_id for a in never.values()} == {ids[1]}
    _one_mail(world, LUOYANG_TECH, never[LUOYANG])
    _one_mail(world, ZHULI_TECH, never[ZHULI])
    assert sorted((a.rule, a.device_id) for a in _tickets_since(world, before)) == sorted([
        ("bandwidth_low", LUXI), ("check_failed", SHIYAN),
        ("device_never_connected", LUOYANG), ("device_never_connected", ZHULI),
    ])

    # Fixed before the recheck: it passes, and the tickets resolve.
    luxi.clear("bandwidth_up")
    shiyan.scenario = replace(shiyan.scenario, network=SimNetwork())
    _check_lesson(world, ids[:2], first, 16)
    _resolved(world, bandwidth, LUXI)
    _resolved(world, check, SHIYAN)
    world.start_agent(ZHULI)  # switched on at last
    world.wait_reporting(ZHULI)
    _resolved(world, never[ZHULI], ZHULI)

    # Lesson 2: the main end goes away before its checks.
    running = world.agents.pop(SHIYAN)
    running.agent.stop()
    running.thread.join(timeout=10)
    offline = _fired(world, "device_offline", SHIYAN)
    _one_mail(world, SHIYAN_TECH, offline)
    _check_lesson(world, ids[2:], second, 20)
    assert _tickets(world, "check_no_answer", SHIYAN) == []  # a recheck follows
    _check_lesson(world, ids[2:], second, 16)
    silent = _fired(world, "check_no_answer", SHIYAN)
    assert silent.lesson_id == ids[2]
    # Inhibited by the offline ticket, which already told the technician: no second mail.
    assert not world.mail_to(SHIYAN_TECH, "firing", silent.id)
    world.start_agent(SHIYAN)
    world.wait_reporting(SHIYAN)
    _resolved(world, offline, SHIYAN)
    _resolved(world, silent, SHIYAN)


def test_an_unknown_agent_with_valid_credentials_is_ticketed_to_the_admins(
    matrix: World,
) -> None:
    world = matrix
    world.start_agent(STRANGER)
    alert = _fired(world, "device_not_enrolled", STRANGER)
    assert alert.classroom_id is None
    _one_mail(world, ADMIN_MAIL, alert)
    running = world.agents.pop(STRANGER)
    running.agent.stop()
    running.thread.join(timeout=10)
    world.clock.advance(seconds=901)  # quiet for the strangers' quiet_s: gone
    world.tick()
    _resolved(world, alert, STRANGER)


def test_every_rule_is_reached_by_a_row_or_named_as_a_gap() -> None:
    reached = {row.rule for row in ROWS if row.rule} | {
        "bandwidth_low", "check_failed", "device_never_connected", "device_offline",
        "check_no_answer", "device_not_enrolled",
    }
    assert not reached & set(GAPS), "a rule both reached and listed as a gap"
    assert set(RULES) == reached | set(GAPS)
