"""The whole product on loopback: a Mosquitto with per-device users and the production
ACL, the real Fleet on SQLite, real agents on simulated classrooms, a real SMTP server.

Time is one :class:`ManualClock` shared by the fleet and the agents (commands are signed
and verified against it), so a test moves a morning forward by calling ``advance``
instead of sleeping.  Things that cross the network are awaited with :func:`wait_until`.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select

from agent.app import Agent
from agent.config import AgentConfig, CommandsConfig, HardwareConfig, MqttConfig, NetworkConfig
from agent.config import RuntimeConfig as AgentRuntime
from agent.contract import format_ts
from agent.hardware.scenario import Scenario, default_scenario
from agent.hardware.simulated import SimulatedHardware
from fleet.alerts.config import AlertConfig
from fleet.app import Fleet
from fleet.broker import Mosquitto, free_port
from fleet.checks.readiness import Readiness, lesson_readiness
from fleet.config import DatabaseConfig, FleetConfig
from fleet.db.base import session_scope
from fleet.db.models import Alert, AlertEvent, CheckRun, Classroom, Lesson, School
from fleet.metrics import Sample
from fleet.notify.config import EmailConfig
from fleet.state import DeviceStatus
from fleet.timetable.importer import Semester, import_timetable
from tests.clock import ManualClock
from tests.fleet.alert_helpers import ALWAYS_PAGED
from tests.fleet.smtp import Received, SmtpServer
from tests.served import served

__all__ = [
    "DONGTOU_COUNTY",
    "FLEET_PASSWORD",
    "LUXI",
    "LUXI_TECH",
    "MORNING",
    "PILOT_DEVICES",
    "SHIYAN",
    "SHIYAN_TECH",
    "STUDENT_CAMERA",
    "TZ",
    "LessonRow",
    "World",
    "agent_config",
    "classroom_agent",
    "device_password",
    "e2e_config",
    "sample_value",
    "timetable_csv",
    "wait_until",
]

TZ = ZoneInfo("Asia/Shanghai")
FLEET_PASSWORD = "fleet-e2e-secret"

# The Dongtou pair of the demo inventory (fleet/demo_inventory.toml) and its people.
SHIYAN = "dongtou-shiyan-sync1"  # 洞头区实验小学 (town, main end)
LUXI = "dongtou-luxi-sync1"  # 洞头区鹿西乡小学 (rural, receiving end)
SHIYAN_TECH = "tech@dtsy.example.cn"  # appointed technician of 洞头区实验小学
LUXI_TECH = "tech@luxi.example.cn"  # appointed technician of 洞头区鹿西乡小学
DONGTOU_COUNTY = "dianjiao@dongtou.example.cn"  # 洞头区 电教 contact
PILOT_DEVICES = (
    "dongtou-luxi-sync1", "dongtou-shiyan-sync1", "taishun-luoyang2-sync1",
    "taishun-zhuli-sync1", "wencheng-shiyan-sync1", "wencheng-xikeng-sync1",
    "yueqing-chengnan-sync1", "yueqing-longxi-sync1", "yueqing-shantou-sync1",
)
STUDENT_CAMERA = "usb-0000:00:14.0-2"  # of agent.hardware.scenario.default_scenario()

# A school Monday, 09:00 in Wenzhou: fixed so that no run depends on the hour it starts.
MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)

T = TypeVar("T")


def device_password(device_id: str) -> str:
    return f"{device_id}-pw"


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 15.0,
               every: float = 0.05, between: Callable[[], None] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy (network results arrive later)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        if between is not None:
            between()
        time.sleep(every)


def sample_value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The value of one metric sample (0 when the component never counted it)."""
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return 0.0


def e2e_config(workdir: Path, mqtt_url: str, smtp_port: int) -> FleetConfig:
    """Embedded defaults with the lead times shortened (10/5 min, no spread) and the
    notification path immediate (no group wait, the outbox polled every 0.1 s)."""
    base = FleetConfig()
    alerts = AlertConfig()
    return FleetConfig(
        database=DatabaseConfig(url=f"sqlite:///{workdir / 'fleet.db'}"),
        mqtt=replace(base.mqtt, url=mqtt_url, username="fleet", password=FLEET_PASSWORD,
                     reconnect_min_s=0.1, reconnect_max_s=1.0),
        checks=replace(base.checks, lead_minutes=10, spread_minutes=0, recheck_lead_minutes=5,
                       recheck_spread_minutes=0, answer_timeout_s=60,
                       # The simulated classroom measures without fetching it.
                       bandwidth_url="http://127.0.0.1:9/api/v1/bandwidth"),
        actions=replace(base.actions, key_file=workdir / "fleet-ed25519.key"),
        alerts=replace(
            alerts, group_wait_s=0, lesson_group_wait_s=0, escalate_after_s=300,
            reminder_interval_s=3600,
            # Moving the stopped clock by minutes makes every agent look silent until its
            # next message (a second later): that must not become an alert.
            up_delays={**alerts.up_delays, "device_silent": 3600.0},
        ),
        notify=replace(base.notify, poll_interval_s=0.1, backoff_initial_s=1,
                       email=EmailConfig(host="127.0.0.1", port=smtp_port,
                                         sender="同步课堂运维 <syncclass@example.cn>")),
    ).coherent()


@dataclass(frozen=True)
class LessonRow:
    """One one-off lesson of the timetable CSV; ``start`` is local wall time."""

    start: datetime
    main: str
    receivers: tuple[str, ...]
    subject: str = "数学"
    grade: str = "二年级"
    teacher: str = "林晓红"
    minutes: int = 40
    mode: str = "直播"


def timetable_csv(rows: list[LessonRow]) -> bytes:
    """The CSV schools keep their timetable in (one-off rows)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["类型", "日期", "开始", "结束", "学科", "年级", "教师", "主讲学校",
                     "主讲教室", "接收教室", "方式"])
    for row in rows:
        start = row.start.astimezone(TZ)
        end = start + timedelta(minutes=row.minutes)
        writer.writerow(["单次", start.date().isoformat(), start.strftime("%H:%M"),
                         end.strftime("%H:%M"), row.subject, row.grade, row.teacher, row.main,
                         "同步课堂教室", "；".join(f"{r}/同步课堂教室" for r in row.receivers),
                         row.mode])
    return out.getvalue().encode("utf-8-sig")


def agent_config(workdir: Path, mqtt_url: str, device_id: str, fleet_public_key: str,
                 reboot_command: list[str] | None = None, interval: float = 1.0,
                 network: NetworkConfig | None = None) -> AgentConfig:
    """A simulated classroom's agent (every second by default), as the e2e broker knows it;
    ``network``: its targets and recording hosts (default: the fleet at 127.0.0.1)."""
    return AgentConfig(
        device_id=device_id,
        mqtt=MqttConfig(url=mqtt_url, username=device_id,
                        password=device_password(device_id), backoff_max_s=1.0),
        hardware=HardwareConfig(backend="simulated"),
        agent=AgentRuntime(interval=interval, state_dir=workdir / "agents" / device_id),
        commands=CommandsConfig(
            fleet_public_key=fleet_public_key,
            allowed_units=["syncclass-agent"],
            reboot_command=reboot_command or ["true"],
            restart_command=["true"],
        ),
        network=network or NetworkConfig(targets={"fleet": "127.0.0.1"}),
    )


def classroom_agent(
    device_id: str, broker: Mosquitto, fleet_public_key: str, workdir: Path,
    clock: Callable[[], datetime], *, scenario: Scenario | None = None,
    reboot_command: list[str] | None = None, agent_type: type[Agent] = Agent,
    interval: float = 1.0, network: NetworkConfig | None = None,
) -> tuple[Agent, SimulatedHardware]:
    """A real agent on a simulated classroom (default: healthy), not yet running, with
    its state under ``workdir/agents``; it trusts commands signed by ``fleet_public_key``."""
    hardware = SimulatedHardware(scenario or default_scenario(), poll_s=0.1)
    config = agent_config(workdir, broker.url, device_id, fleet_public_key, reboot_command,
                          interval, network)
    return agent_type(config, hardware, clock=clock), hardware


@dataclass
class _RunningAgent:
    agent: Agent
    thread: threading.Thread


class World:
    """One test's fleet, agents, broker and mailbox; ``close`` stops everything it started."""

    def __init__(self, workdir: Path, broker: Mosquitto, smtp: SmtpServer) -> None:
        self.workdir = workdir
        self.broker = broker
        self.smtp = smtp
        self.clock = ManualClock(MORNING)
        self.config = e2e_config(workdir, broker.url, smtp.port)
        self.fleet: Fleet | None = None
        self.agents: dict[str, _RunningAgent] = {}
        self._http = ExitStack()

    # ------------------------------------------------------------ the fleet

    def start_fleet(self, serve_http: bool = False, link_alerts: bool = False) -> Fleet:
        """The fleet; with ``serve_http`` its API is served on a free port too, and its
        checks name that server's bandwidth test endpoint; with ``link_alerts`` too, its
        messages link each alert on that server's page."""
        assert self.fleet is None, "a fleet is already running"
        port = free_port()
        if serve_http:
            checks = replace(self.config.checks,
                             bandwidth_url=f"http://127.0.0.1:{port}/api/v1/bandwidth")
            self.config = replace(self.config, checks=checks)
        if serve_http and link_alerts:
            alerts = replace(self.config.alerts, base_url=f"http://127.0.0.1:{port}")
            self.config = replace(self.config, alerts=alerts)
        fleet = Fleet(self.config, clock=self.clock)
        fleet.start()
        self.fleet = fleet
        if serve_http:
            self._http.enter_context(served(fleet.api, port))
        if not fleet.mqtt.wait_ready(10):
            raise AssertionError("the fleet did not subscribe to the broker")
        return fleet

    def page_always(self) -> None:
        """Every rule pages whenever it fires: for tests of something else whose camera or
        microphone fault happens outside any lesson, where it is now held."""
        self.config = replace(self.config, alerts=replace(self.config.alerts,
                                                          when=ALWAYS_PAGED))

    def stop_fleet(self) -> None:
        self._http.close()
        fleet, self.fleet = self.fleet, None
        if fleet is not None:
            fleet.close()

    @property
    def running(self) -> Fleet:
        assert self.fleet is not None, "no fleet is running"
        return self.fleet

    def tick(self) -> None:
        self.running.tick()

    def import_lessons(self, *rows: LessonRow) -> list[int]:
        """Import a timetable; returns the lesson ids in the order given."""
        with session_scope(self.running.sessions) as session:
            import_timetable(session, timetable_csv(list(rows)), "e2e-timetable.csv",
                             semester=Semester(date(2026, 2, 23), date(2026, 7, 3),
                                               name="2025学年第二学期"))
        ids = []
        with session_scope(self.running.sessions) as session:
            for row in rows:
                start = row.start.astimezone(TZ).replace(second=0, microsecond=0)
                ids.append(session.scalars(
                    select(Lesson.id)
                    .join(Classroom, Classroom.id == Lesson.main_classroom_id)
                    .join(School, School.id == Classroom.school_id)
                    .where(Lesson.starts_at == start, School.name == row.main)
                ).one())
        return ids

    def readiness(self, lesson_id: int) -> Readiness:
        with session_scope(self.running.sessions) as session:
            lesson = session.get_one(Lesson, lesson_id)
            return lesson_readiness(session, lesson, self.clock())

    def check_runs(self, lesson_id: int) -> list[CheckRun]:
        with session_scope(self.running.sessions) as session:
            runs = list(session.scalars(
                select(CheckRun).where(CheckRun.lesson_id == lesson_id).order_by(CheckRun.id)
            ))
            session.expunge_all()
            return runs

    def alerts(self, rule: str | None = None, device_id: str | None = None) -> list[Alert]:
        with session_scope(self.running.sessions) as session:
            found = self.running.alerts.query(session, rule=rule, device_id=device_id)
            session.expunge_all()
            return found

    def alert_events(self, alert_id: int) -> list[AlertEvent]:
        with session_scope(self.running.sessions) as session:
            events = list(session.scalars(
                select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
            ))
            session.expunge_all()
            return events

    def mail_to(self, address: str, kind: str, alert_id: int | None = None) -> list[Received]:
        """Messages of ``kind`` (firing, escalation...) the SMTP server got for ``address``,
        about ``alert_id`` (the first of the message's alerts) if given."""
        return [m for m in list(self.smtp.messages)
                if address in m.rcpt_tos and m.message["X-Syncclass-Kind"] == kind
                and (alert_id is None or m.message["X-Syncclass-Alert"] == str(alert_id))]

    def wait_mail(self, address: str, kind: str, alert_id: int | None = None,
                  timeout: float = 15.0) -> Received:
        # Ticking here too: the fleet's own ticker runs only once a second.
        found = wait_until(f"a {kind} e-mail to {address}",
                           lambda: self.mail_to(address, kind, alert_id), timeout,
                           between=self.tick)
        return found[0]

    # ------------------------------------------------------------ the classrooms

    def start_agent(self, device_id: str, reboot_command: list[str] | None = None,
                    scenario: Scenario | None = None,
                    agent_type: type[Agent] = Agent,
                    clock: Callable[[], datetime] | None = None,
                    network: NetworkConfig | None = None) -> SimulatedHardware:
        """A real agent on a simulated classroom (default: healthy), reporting every
        second; ``agent_type`` may stand in for an older agent's birth, ``clock`` for a
        PC whose clock is not the world's; ``network`` for other targets or recording hosts."""
        assert self.fleet is not None, "start the fleet first: it holds the signing key"
        agent, hardware = classroom_agent(
            device_id, self.broker, self.fleet.signer.public_key_b64, self.workdir,
            clock or self.clock,
            scenario=scenario, reboot_command=reboot_command, agent_type=agent_type,
            network=network)
        thread = threading.Thread(target=agent.run, name=f"agent-{device_id}", daemon=True)
        thread.start()
        self.agents[device_id] = _RunningAgent(agent, thread)
        return hardware

    def wait_reporting(self, *device_ids: str) -> None:
        """Until the fleet has each device online with telemetry in its state."""
        for device_id in device_ids:
            def seen(device_id: str = device_id) -> bool:
                state = self.running.states.get(device_id)
                return bool(state and state.online and state.telemetry)

            wait_until(f"{device_id} online and reporting", seen)

    def wait_fresh_telemetry(self, device_id: str) -> DeviceStatus:
        """Move the clock on one agent interval; wait until the fleet's state of the device
        holds telemetry the agent stamped at that new instant (sent after everything
        before; the fleet's own ``telemetry_at`` is when it arrived)."""
        now = self.clock.advance(seconds=1)

        def fresh() -> DeviceStatus | None:
            state = self.running.states.get(device_id)
            return state if state is not None and state.telemetry.get("ts") == format_ts(
                now) else None

        return wait_until(f"telemetry of {device_id} stamped {now:%H:%M:%S}", fresh)

    def close(self) -> None:
        for running in self.agents.values():
            running.agent.stop()
        for running in self.agents.values():
            running.thread.join(timeout=10)
        self.agents.clear()
        self.stop_fleet()
