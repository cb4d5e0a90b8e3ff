"""A small county for the alert tests: two paired schools, technicians, a lesson.

Everything is real rows in a tmp SQLite database; time comes from a ``ManualClock``,
which the tests move by hand instead of sleeping.  Payloads go through the wire contract's
encode/decode so the engine sees exactly what the ingest would hand it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent import contract
from agent.contract import Kind
from fleet.alerts import AlertConfig, AlertEngine
from fleet.alerts.config import ALWAYS, WHEN_DEFAULTS
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import (
    Classroom,
    County,
    Device,
    Lesson,
    LessonMode,
    LessonReceiver,
    Notification,
    NotificationStatus,
    Pair,
    PairMember,
    Person,
    PersonSchool,
    Role,
    School,
    SchoolKind,
)
from tests.clock import ManualClock
from tests.fleet.db import fresh_db

__all__ = ["ALWAYS_PAGED", "START", "World", "build_world", "payload"]

#: ``AlertConfig.when`` that pages every rule whenever it fires (the engine before lessons
#: decided when a fault matters).
ALWAYS_PAGED = dict.fromkeys(WHEN_DEFAULTS, ALWAYS)

# Monday 23 November 2026, 09:00 in Wenzhou.
START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@dataclass
class World:
    sessions: SessionFactory
    clock: ManualClock
    engine: AlertEngine
    town_room: int
    rural_room: int
    rural_school: int
    lesson_id: int
    seq: int = 0

    def send(self, kind: Kind, device_id: str, **fields: Any) -> None:
        """Deliver one payload of ``kind`` to the engine, stamped with the clock's time."""
        self.seq += 1
        body = payload(kind, device_id, self.clock(), self.seq, **fields)
        getattr(self.engine, f"on_{kind.value.replace('/', '_')}")(device_id, body)

    def tick_after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.tick()

    def notifications(self, kind: str | None = None) -> list[Notification]:
        with session_scope(self.sessions) as session:
            query = select(Notification).order_by(Notification.id)
            if kind is not None:
                query = query.where(Notification.kind == kind)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def delivered(self, channel: str) -> None:
        """The outbox delivered every queued message of ``channel`` (as its dispatcher
        records a success): the engine tests need no network for it."""
        with session_scope(self.sessions) as session:
            for row in session.scalars(select(Notification).where(
                Notification.channel == channel,
                Notification.status == NotificationStatus.PENDING,
            )):
                row.status, row.sent_at = NotificationStatus.SENT, self.clock()

    def session(self) -> Session:
        return self.sessions()


def payload(kind: Kind, device_id: str, when: datetime, seq: int, **fields: Any) -> dict[str, Any]:
    body = {**contract.envelope(device_id, seq, when), **fields}
    return contract.decode(device_id, kind, contract.encode(body))


def build_world(tmp_path: Path, config: AlertConfig | None = None, url: str = "") -> World:
    """The county in a fresh database: SQLite under ``tmp_path`` unless ``url`` is given."""
    sessions = fresh_db(tmp_path, url or None)
    clock = ManualClock(START)
    with session_scope(sessions) as s:
        county = County(name="洞头区", city="温州市", wecom_webhook="http://127.0.0.1:9/county-wecom")
        town = School(county=county, name="洞头区实验小学", kind=SchoolKind.TOWN)
        rural = School(
            county=county,
            name="鹿西乡小学",
            kind=SchoolKind.RURAL,
            dingtalk_webhook="http://127.0.0.1:9/rural-dingtalk",
            dingtalk_secret="SECxyz",
        )
        town_room = Classroom(school=town, name="同步课堂教室")
        rural_room = Classroom(school=rural, name="三(1)班")
        s.add_all([county, town, rural, town_room, rural_room])
        s.flush()
        pair = Pair(name="洞头—鹿西", town_school_id=town.id)
        pair.members.append(PairMember(school_id=rural.id))
        s.add(pair)
        s.add_all([
            Device(id="town-1", classroom_id=town_room.id),
            Device(id="rural-1", classroom_id=rural_room.id),
        ])
        tech = Person(username="lin", name="林老师", role=Role.SCHOOL_TECH,
                      email="lin@luxi.example.cn")
        tech.schools.append(PersonSchool(school_id=rural.id, appointed=True))
        county_tech = Person(username="chen", name="陈工", role=Role.COUNTY_TECH,
                             county_id=county.id, email="chen@dongtou.example.cn")
        s.add_all([tech, county_tech])
        lesson = Lesson(
            subject="数学",
            grade="二年级",
            teacher="王老师",
            starts_at=START + timedelta(hours=1),  # 10:00 local
            ends_at=START + timedelta(hours=1, minutes=40),
            mode=LessonMode.LIVE,
            main_classroom_id=town_room.id,
        )
        lesson.receivers.append(LessonReceiver(classroom_id=rural_room.id))
        s.add(lesson)
        s.flush()
        ids = (town_room.id, rural_room.id, rural.id, lesson.id)
    cfg = config or AlertConfig(
        # Every rule pages whenever it fires: these worlds test the life-cycle, grouping
        # and texts; when a fault matters has its own tests (test_alert_windows.py).
        when=ALWAYS_PAGED,
        up_delays={"device_offline": 30.0, "network_loss": 60.0},
        down_delays={"device_offline": 30.0},
        down_delay_s=20.0,
        group_wait_s=30.0,
        reminder_interval_s=1800.0,
        escalate_after_s=900.0,
    )
    alerts = AlertEngine(sessions, cfg, clock=clock)
    return World(sessions, clock, alerts, *ids)


