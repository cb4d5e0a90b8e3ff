"""A Monday-morning storm on one county-wide group robot (DingTalk, then WeCom): 40
classrooms' cameras fail within a minute and every one is told, in digests, none lost,
none later than DingTalk's 10-minute throttle, and the robot (the receiver that enforces
the documented limits) never has to refuse.

The faults come from 40 real agents on simulated classrooms: each loses its student
camera, the agent raises its hot-plug event, and it travels through a real Mosquitto
into the fleet's real ingest and alert engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from agent.app import Agent
from agent.config import AgentConfig, HardwareConfig, MqttConfig, NetworkConfig
from agent.config import RuntimeConfig as AgentRuntime
from agent.hardware.scenario import Fault, default_scenario
from agent.hardware.simulated import SimulatedHardware
from fleet.alerts import AlertConfig, AlertEngine
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import (
    Alert,
    Classroom,
    County,
    Device,
    Notification,
    NotificationStatus,
    School,
    SchoolKind,
)
from fleet.notify import Dispatcher, NotifyConfig, build_channels
from tests.clock import ManualClock
from tests.fleet.alert_helpers import ALWAYS_PAGED, START
from tests.fleet.checks_helpers import fleet_ingest
from tests.fleet.db import fresh_db
from tests.fleet.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

SCHOOLS, ROOMS = 10, 4  # 40 classrooms
STUDENT_CAMERA = "usb-0000:00:14.0-2"  # of default_scenario()
SECRET = "SECcounty"
THROTTLE = timedelta(minutes=10)  # DingTalk's, after a robot passed 20 a minute


@dataclass
class Room:
    """One classroom's real agent on simulated hardware, run in its own thread."""

    agent: Agent
    hardware: SimulatedHardware
    thread: threading.Thread


def start_agent(broker: Mosquitto, device_id: str, workdir: Path, clock: ManualClock) -> Room:
    hardware = SimulatedHardware(default_scenario(), clock=clock, poll_s=3600)
    config = AgentConfig(
        device_id=device_id,
        mqtt=MqttConfig(url=broker.url, backoff_max_s=1.0),
        hardware=HardwareConfig(backend="simulated"),
        # One telemetry message at start, then only what the hardware's hot-plug raises.
        agent=AgentRuntime(interval=3600, state_dir=workdir / device_id),
        network=NetworkConfig(targets={"fleet": "127.0.0.1"}),
    )
    agent = Agent(config, hardware, clock=clock)
    thread = threading.Thread(target=agent.run, name=f"agent-{device_id}", daemon=True)
    thread.start()
    return Room(agent, hardware, thread)


ROBOTS = {  # kind -> (receiver path, the inventory's settings of that robot)
    "dingtalk": ("/dingtalk/robot/send?access_token=dt", "dingtalk_webhook"),
    "wecom": ("/wecom/cgi-bin/webhook/send?key=dt", "wecom_webhook"),
}


def county(sessions: SessionFactory, kind: str, url: str) -> list[tuple[str, str]]:
    """洞头区 with the county's one robot set on every school; (device, "学校 教室")."""
    robot = {ROBOTS[kind][1]: url, "dingtalk_secret": SECRET}
    places = []
    with session_scope(sessions) as s:
        dongtou = County(name="洞头区", city="温州市", **robot)
        s.add(dongtou)
        for n in range(SCHOOLS):
            school = School(county=dongtou, name=f"洞头第{n + 1}小学", kind=SchoolKind.RURAL,
                            **robot)
            for r in range(ROOMS):
                room = Classroom(school=school, name=f"{r + 1}号同步教室")
                s.add(room)
                s.flush()
                device_id = f"dongtou-{n + 1:02d}-{r + 1}"
                s.add(Device(id=device_id, classroom_id=room.id))
                places.append((device_id, f"{school.name} {room.name}"))
    return places


@pytest.fixture(params=sorted(ROBOTS))
def rooms(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    broker: Mosquitto,
    webhook_receiver: WebhookReceiver,
) -> Iterator[tuple[SessionFactory, ManualClock, list[Room], list[str]]]:
    """The county on one robot of each kind in turn, its 40 agents connected."""
    sessions = fresh_db(tmp_path)
    clock = ManualClock(START)
    webhook_receiver.state.clock = clock
    webhook_receiver.state.dingtalk_secret = SECRET
    kind = str(request.param)
    places = county(sessions, kind, webhook_receiver.url(ROBOTS[kind][0]))
    agents = [start_agent(broker, device_id, tmp_path / "agents", clock)
              for device_id, _ in places]
    try:
        assert wait_until(lambda: all(r.agent.link.connected for r in agents), 30), (
            "the agents did not connect")
        yield sessions, clock, agents, [where for _, where in places]
    finally:
        for room in agents:
            room.agent.stop()
        for room in agents:
            room.thread.join(10)
        sessions.kw["bind"].dispose()


def text(body: dict[str, Any]) -> str:
    """The markdown a robot was sent (DingTalk: ``text``, WeCom: ``content``)."""
    markdown = body["markdown"]
    return str(markdown.get("text") or markdown["content"])


def alerts_open(sessions: SessionFactory) -> int:
    with session_scope(sessions) as s:
        return int(s.scalar(select(func.count()).select_from(Alert)) or 0)


def test_forty_classrooms_failing_in_a_minute_reach_one_robot_all_told_none_refused(
    rooms: tuple[SessionFactory, ManualClock, list[Room], list[str]],
    broker: Mosquitto,
    webhook_receiver: WebhookReceiver,
) -> None:
    sessions, clock, agents, places = rooms
    engine = AlertEngine(
        sessions,
        # Paged whenever they fire: a storm outside lessons is held, and this test is about
        # the robot's limit.
        AlertConfig(group_wait_s=30, escalate_after_s=900, reminder_interval_s=1800,
                    base_url="https://fleet.dongtou.example.cn", when=ALWAYS_PAGED),
        clock=clock,
    )
    config = NotifyConfig()  # the documented limits: 20 a minute per robot
    dispatcher = Dispatcher(sessions, build_channels(config, clock), config, clock)
    ingest = fleet_ingest(broker, sessions, [engine])

    def step(seconds: float) -> None:  # the fleet's tick and its outbox poll (5 s)
        clock.advance(seconds)
        engine.tick()
        dispatcher.run_due()

    try:
        for n, room in enumerate(agents):  # 40 cameras in 50 s
            room.hardware.apply(Fault("camera_unplugged", STUDENT_CAMERA))
            assert wait_until(lambda n=n: alerts_open(sessions) == n + 1, 10), (
                f"the fault of {room.agent.device_id} did not become an alert")
            if n % 4 == 3:
                step(5)
        for _ in range(12 * 50):  # 50 minutes: escalations at 15, reminders 30 later
            step(5)
    finally:
        ingest.close()

    requests = webhook_receiver.requests
    assert requests and all(r.accepted for r in requests), "the robot had to refuse"
    with session_scope(sessions) as s:
        notices = list(s.scalars(select(Notification).where(Notification.kind != "digest")))
        kinds = {n.kind for n in notices}
        late = [n for n in notices if n.sent_at is None or n.sent_at - n.created_at > THROTTLE]
        statuses = {n.status for n in notices}
        firing = {i for n in notices if n.kind == "firing" for i in n.payload["alert_ids"]}
        alert_ids = set(s.scalars(select(Alert.id)))
    assert statuses == {NotificationStatus.SENT}, "every notice delivered, none lost"
    assert late == []
    assert firing == alert_ids and len(alert_ids) == 40
    assert {"firing", "escalation", "reminder"} <= kinds
    told = "\n".join(text(r.json) for r in requests)
    missing = [where for where in places if where not in told]
    assert missing == [], "every classroom named in a message the robot accepted"
    assert len(requests) < len(notices), "the storm went out in digests"
    assert "间教室告警 / [Digest]" in told
    digests = sum("[Digest]" in text(r.json) for r in requests)
    print(f"storm: {len(notices)} notices, {len(requests)} robot messages, "  # for the README
          f"{digests} digests, 0 refused")
