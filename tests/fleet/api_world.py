"""The API over the demo pilot: a real app on a tmp SQLite database, real alert engine.

The clock is fixed at Monday 2026-03-02 09:30 in Shanghai and moved by the tests.
Lessons and alerts are made the way the fleet makes them: lessons as rows (what the
timetable import writes), alerts by feeding the real ``AlertEngine`` status payloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent.contract import envelope
from fleet.alerts.config import AlertConfig
from fleet.alerts.engine import AlertEngine
from fleet.api import ApiConfig, Services, create_api
from fleet.checks.readiness import lessons_readiness
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert, CheckRun, Classroom, Lesson, LessonMode, LessonReceiver, School
from fleet.state import DeviceStates
from tests.clock import ManualClock

__all__ = ["NOW", "PASSWORD", "World", "open_world", "world"]

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # Monday 09:30 Asia/Shanghai
PASSWORD = "syncclass-demo"  # every demo person's password


@dataclass
class World:
    sessions: SessionFactory
    clock: ManualClock
    alerts: AlertEngine
    states: DeviceStates
    services: Services
    app: FastAPI
    client: TestClient
    _tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, username: str) -> dict[str, str]:
        if username not in self._tokens:
            reply = self.client.post(
                "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
            )
            assert reply.status_code == 200, reply.text
            self._tokens[username] = reply.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[username]}"}

    def get(self, username: str, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(username), **kwargs)

    def post(self, username: str, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.headers(username), **kwargs)

    def classroom(self, school: str) -> int:
        with session_scope(self.sessions) as session:
            room = session.scalars(
                select(Classroom).join(School).where(School.name == school)
            ).one()
            return room.id

    def add_lesson(
        self,
        main_school: str,
        receiver_schools: list[str],
        starts_at: datetime,
        subject: str = "数学",
        minutes: int = 40,
    ) -> int:
        main = self.classroom(main_school)
        receivers = [self.classroom(s) for s in receiver_schools]
        with session_scope(self.sessions) as session:
            lesson = Lesson(
                subject=subject,
                grade="二年级",
                teacher="王老师",
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=minutes),
                mode=LessonMode.LIVE,
                main_classroom_id=main,
                receivers=[LessonReceiver(classroom_id=r) for r in receivers],
            )
            session.add(lesson)
            session.flush()
            return lesson.id

    def add_check(
        self,
        lesson_id: int,
        device_id: str,
        verdict: str,
        requested_at: datetime,
        findings: list[dict[str, Any]] | None = None,
    ) -> None:
        """A check run as the scheduler records it once the agent answered (``findings``:
        the agent's, as it sent them)."""
        with session_scope(self.sessions) as session:
            session.add(
                CheckRun(
                    request_id=f"{lesson_id}-{device_id}-{requested_at.timestamp()}",
                    lesson_id=lesson_id,
                    device_id=device_id,
                    phase="first",
                    requested_at=requested_at,
                    answered_at=requested_at + timedelta(seconds=20),
                    verdict=verdict,
                    findings=findings or [],
                )
            )

    def status(self, device_id: str, state: str, session_no: int = 1) -> None:
        """A retained status (birth or Last Will) reaching the device states and the engine."""
        payload = envelope(device_id, 0, self.clock()) | {
            "state": state,
            "session": session_no,
            "agent_version": "0.1.0",
        }
        self.states.on_status(device_id, payload)
        self.alerts.on_status(device_id, payload)

    def take_offline(self, device_id: str) -> int:
        """The device's Last Will arrives and the alert fires; returns the alert id."""
        self.status(device_id, "offline")
        self.clock.advance(seconds=120)
        self.alerts.tick()
        with session_scope(self.sessions) as session:
            return session.scalars(
                select(Alert.id).where(Alert.device_id == device_id, Alert.rule == "device_offline")
            ).one()


def open_world(sessions: SessionFactory) -> World:
    """The app over ``sessions`` (a database holding the pilot) with a fixed clock."""
    clock = ManualClock(NOW)
    alerts = AlertEngine(sessions, AlertConfig(), clock)
    states = DeviceStates(sessions, clock)
    services = Services(
        sessions=sessions,
        config=ApiConfig(),
        clock=clock,
        states=states,
        alerts=alerts,
        readiness=lessons_readiness,
        metric_sources=[alerts, states],
    )
    app = create_api(services)
    return World(sessions, clock, alerts, states, services, app, TestClient(app))


@pytest.fixture
def world(pilot: SessionFactory) -> Iterator[World]:
    w = open_world(pilot)
    with w.client:
        yield w
