"""When a fault matters: a display unplugged after the last lesson pages nobody until the
next lesson's first check; in a lesson's lead window a camera pages in seconds.

The demo pilot's schools and people, the real alert engine with the default settings, a
real SMTP server behind the real outbox dispatcher, and the API a technician reads; on
SQLite and on PostgreSQL.  Payloads are the agent's own hot-plug events (its
``device_event``) through the wire contract.  Time is the test's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from agent.config import MqttConfig
from agent.contract import Kind
from agent.hardware.events import device_event
from fleet.alerts import RULES, AlertConfig, AlertEngine
from fleet.alerts.config import ALWAYS, CHECKS, LESSONS, WHEN_DEFAULTS
from fleet.alerts.stages.lesson_window import HELD, LessonWindows, Near
from fleet.checks.config import CheckConfig
from fleet.checks.scheduler import spread_offset
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert, Notification
from fleet.notify import Dispatcher, NotifyConfig, build_channels
from fleet.notify.config import EmailConfig
from fleet.ticker import Ticker
from tests.clock import ManualClock
from tests.fleet.alert_helpers import payload
from tests.fleet.api_world import World, open_world
from tests.fleet.db import fresh_db
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot
from tests.fleet.smtp import SmtpServer

TZ = ZoneInfo("Asia/Shanghai")
LUXI = "dongtou-luxi-sync1"  # 洞头区鹿西乡小学, receiving end of the 洞头 pair
SHIYAN = "dongtou-shiyan-sync1"  # 洞头区实验小学, its main end
LUXI_TECH, SHIYAN_TECH = "tech@luxi.example.cn", "tech@dtsy.example.cn"
DISPLAY = "card0-HDMI-A-1"  # the simulated classroom's projector output


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionFactory]:
    """The demo pilot on SQLite or on the real PostgreSQL."""
    if request.param == "sqlite":
        factory: SessionFactory = request.getfixturevalue("pilot")
        yield factory
        return
    url = fresh_database(request.getfixturevalue("postgres"), "alert_windows")
    factory = fresh_db(tmp_path, url)
    load_pilot(factory)
    yield factory
    factory.kw["bind"].dispose()


class Outbox:
    """The fleet's dispatcher, e-mail only, towards the real SMTP server."""

    def __init__(self, sessions: SessionFactory, clock: ManualClock, smtp: SmtpServer) -> None:
        config = NotifyConfig()
        config.email = EmailConfig(host=smtp.host, port=smtp.port)
        self.dispatcher = Dispatcher(sessions, build_channels(config, clock), config, clock)
        self.smtp = smtp

    def inbox(self, address: str) -> list[str]:
        """Subjects and bodies of the mails ``address`` has received so far."""
        self.dispatcher.run_due()
        return [f"{m.message['Subject']}\n{m.message.get_content()}"
                for m in self.smtp.messages if address in m.rcpt_tos]


def hotplug(engine: AlertEngine, clock: ManualClock, device: str, seq: int,
            plugged: bool) -> None:
    """The agent's hot-plug event for the projector's output, as the ingest hands it on."""
    body = device_event("display", DISPLAY, plugged, {"name": "EPSON EB-X51"})
    engine.on_event(device, payload(Kind.EVENT, device, clock(), seq, **body))


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=TZ)


def tick(world: World, at: datetime) -> None:
    world.clock.set(at)
    world.alerts.tick()


def display_alert(world: World, device: str) -> dict[str, object]:
    reply = world.get("dt-luxi-tech" if device == LUXI else "dt-shiyan-tech", "/api/v1/alerts",
                      params={"device_id": device, "state": ["firing", "resolved"]})
    assert reply.status_code == 200, reply.text
    [alert] = [a for a in reply.json() if a["rule"] == "display_disconnected"]
    return dict(alert)


def test_display_unplugged_after_the_last_lesson_waits_for_the_next_mornings_first_check(
    sessions: SessionFactory, smtp_server: SmtpServer
) -> None:
    world = open_world(sessions)  # the default alert and check settings
    outbox = Outbox(sessions, world.clock, smtp_server)
    with world.client:
        # Tomorrow 08:00: the 洞头 pair's lesson, 鹿西 receiving; nothing left today.
        lesson = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], local(3, 8))
        world.clock.set(local(2, 17))
        hotplug(world.alerts, world.clock, LUXI, 1, plugged=False)
        hotplug(world.alerts, world.clock, SHIYAN, 1, plugged=False)
        for at in (local(2, 17, 1), local(2, 17, 30)):
            tick(world, at)
        hotplug(world.alerts, world.clock, SHIYAN, 2, plugged=True)  # put back at 17:30
        for at in (local(2, 18, 45), local(2, 22), local(3, 6)):
            tick(world, at)

        # Recorded, shown and reported; paged to no one.
        assert outbox.inbox(LUXI_TECH) == [] and smtp_server.messages == []
        with session_scope(sessions) as session:
            assert session.query(Notification).count() == 0
        shown = display_alert(world, LUXI)
        assert shown["state"] == "firing"
        assert str(shown["suppressed_by"]).startswith(HELD)
        assert display_alert(world, SHIYAN)["state"] == "resolved"

        # 鹿西's first check of the lesson (08:00 − 30 min, its place in the 5-minute
        # spread): the display still unplugged is paged then, not a second before.
        first = local(3, 7, 30) + spread_offset(lesson, LUXI, timedelta(minutes=5))
        tick(world, first - timedelta(seconds=1))
        assert str(display_alert(world, LUXI)["suppressed_by"]).startswith(HELD)
        assert outbox.inbox(LUXI_TECH) == []
        tick(world, first)
        tick(world, first + timedelta(seconds=AlertConfig().lesson_group_wait_s))
        [mail] = outbox.inbox(LUXI_TECH)
        assert "显示器未连接" in mail or "显示器/投影仪已断开" in mail
        assert "二年级数学 08:00 与 洞头区实验小学同步" in mail  # the lesson context
        assert "Grade 2 Maths at 08:00 with 洞头区实验小学" in mail
        assert display_alert(world, LUXI)["suppressed_by"] is None
        # The display put back in the evening is not news in the morning.
        assert outbox.inbox(SHIYAN_TECH) == []

        # Acknowledged, and still unplugged when the lesson starts: it escalates anyway,
        # and the escalation names the lesson too.
        world.alerts.acknowledge(int(str(shown["id"])), "dt-luxi-tech", "8点前到 / there by 8")
        tick(world, local(3, 8) + timedelta(seconds=1))
        tick(world, local(3, 8, 0) + timedelta(seconds=4))
        escalations = [m for m in outbox.inbox(LUXI_TECH) if "升级至县电教" in m]
        assert escalations and "二年级数学 08:00 与 洞头区实验小学同步（上课中）" in escalations[0]


def test_camera_in_the_lead_window_reaches_the_inbox_on_the_lesson_timers(
    sessions: SessionFactory, smtp_server: SmtpServer
) -> None:
    world = open_world(sessions)
    outbox = Outbox(sessions, world.clock, smtp_server)
    woken: list[datetime] = []
    engine = AlertEngine(sessions, AlertConfig(), world.clock, wake=woken.append)
    config = engine.config
    with world.client:
        world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], local(2, 10))
        world.clock.set(local(2, 9, 40))  # in the lead window: every first check is out
        body = device_event("camera", "usb-0000:00:14.0-2", False, {"name": "Student camera"})
        engine.on_event(LUXI, payload(Kind.EVENT, LUXI, world.clock(), 1, **body))
        fault = world.clock()
        # The path: no up-delay for a missing camera, the lesson group wait, and the ticker
        # woken for its end (not the next whole tick).
        assert config.up_delay("camera_missing", in_lesson=True) == 0
        assert woken == [fault + timedelta(seconds=config.lesson_group_wait_s)]
        assert config.lesson_group_wait_s <= 10 < config.group_wait_s
        world.clock.set(woken[0] - timedelta(seconds=0.5))
        assert engine_tick(engine, outbox, LUXI_TECH) == []
        world.clock.set(woken[0])
        [mail] = engine_tick(engine, outbox, LUXI_TECH)
        assert "摄像头未连接" in mail and "二年级数学 10:00 与 洞头区实验小学同步" in mail


def engine_tick(engine: AlertEngine, outbox: Outbox, address: str) -> list[str]:
    engine.tick()
    return outbox.inbox(address)


def test_an_offline_pc_fires_at_once_in_a_lesson_window_and_after_30_s_elsewhere(
    sessions: SessionFactory,
) -> None:
    world = open_world(sessions)
    with world.client:
        world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], local(2, 10))
        world.clock.set(local(2, 9, 40))  # in the 洞头 pair's lesson window
        world.status(LUXI, "offline")  # its Will
        world.status("yueqing-chengnan-sync1", "offline")  # no lesson there today
        state = {a.device_id: a.state.value for a in _offline_alerts(sessions)}
        assert state == {LUXI: "firing", "yueqing-chengnan-sync1": "pending"}
        tick(world, local(2, 9, 40) + timedelta(seconds=29))
        assert {a.state.value for a in _offline_alerts(sessions)} == {"firing", "pending"}
        tick(world, local(2, 9, 40) + timedelta(seconds=30))
        assert {a.state.value for a in _offline_alerts(sessions)} == {"firing"}


def _offline_alerts(sessions: SessionFactory) -> list[Alert]:
    with session_scope(sessions) as session:
        rows = list(session.scalars(select(Alert).where(Alert.rule == "device_offline")))
        session.expunge_all()
        return rows


def test_offline_in_a_lesson_is_paged_within_the_keepalive_and_20_s() -> None:
    """A cut classroom PC: the broker's Will after 1.5 keepalives, then the lesson's
    offline up-delay and group wait; outside lessons the damping is as before."""
    alerts, mqtt = AlertConfig(), MqttConfig(url="mqtt://broker.example.cn")
    detection = 1.5 * mqtt.keepalive
    in_lesson = detection + alerts.up_delay("device_offline", in_lesson=True) + (
        alerts.group_wait(in_lesson=True))
    assert in_lesson <= 20
    assert alerts.up_delay("device_offline") + alerts.group_wait(in_lesson=False) == 60


def test_every_rule_has_a_when_and_a_typo_is_refused() -> None:
    config = AlertConfig(when={"display_disconnected": ALWAYS})
    assert config.matters("display_disconnected") == ALWAYS
    assert config.matters("camera_missing") == LESSONS == WHEN_DEFAULTS["camera_missing"]
    assert config.matters("bandwidth_low") == CHECKS
    assert config.matters("device_offline") == ALWAYS  # not in the table: never held
    assert set(WHEN_DEFAULTS) <= set(RULES), "the defaults name only rules that exist"
    with pytest.raises(ValueError, match=r"when\.display_disconected: no such rule"):
        AlertConfig(when={"display_disconected": ALWAYS})
    with pytest.raises(ValueError, match=r"when\.camera_missing must be"):
        AlertConfig(when={"camera_missing": "nights"})


def test_checks_rules_page_only_from_the_first_check_to_the_start() -> None:
    starts = local(2, 10)
    windows = LessonWindows(AlertConfig(), CheckConfig(spread_minutes=0), {
        7: [Near(1, starts, starts + timedelta(minutes=40))]})
    labels = {"classroom_id": "7", "device_id": LUXI}
    for rule, at, muted in (
        ("bandwidth_low", starts - timedelta(minutes=31), True),
        ("bandwidth_low", starts - timedelta(minutes=30), False),
        ("bandwidth_low", starts + timedelta(minutes=1), True),  # the lesson is on
        ("camera_missing", starts + timedelta(minutes=39), False),
        ("camera_missing", starts + timedelta(minutes=40), True),  # it is over
        ("device_offline", starts - timedelta(hours=9), False),
    ):
        reason = windows.muted_by({**labels, "rule": rule}, at)
        assert (reason is not None) is muted, (rule, at, reason)
    # A device the inventory places nowhere has no lessons: its lesson faults are held.
    assert windows.muted_by({"device_id": "x", "rule": "camera_missing"}, starts)


def test_ticker_wakes_for_a_moment_sooner_than_its_period() -> None:
    clock = ManualClock(local(2, 9))
    ticker, stop = Ticker(3600.0, clock), threading.Event()
    returned: list[bool] = []
    waiter = threading.Thread(target=lambda: returned.append(ticker.wait(stop)))
    waiter.start()
    ticker.wake(clock())  # due now: the hour's period is not waited out
    waiter.join(timeout=10)
    assert returned == [True]
    ticker.wake(clock() + timedelta(hours=2))  # later than the period: no sooner tick
    waiter = threading.Thread(target=lambda: returned.append(ticker.wait(stop)))
    waiter.start()
    stop.set()
    ticker.wake()
    waiter.join(timeout=10)
    assert returned == [True, False]
