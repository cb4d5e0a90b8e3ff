"""The live event stream and the alert list's filters, over the real app served by uvicorn:
each person hears only about their own scope; a change written by another process (here:
straight into the database, as another fleet process's alert engine would) is heard; the
stream needs a login; filters narrow within the scope and never widen it."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.auth import principal_of
from fleet.api.live import Cursor, read_changes
from fleet.api.scope import Scope
from fleet.db.base import session_scope
from fleet.db.models import AlertEvent, Person
from tests.fleet.api_world import NOW, World, open_world, world
from tests.fleet.db import fresh_db
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot
from tests.served import served
from tests.waiting import wait_until

__all__ = ["world"]

DONGTOU_DEVICE, YUEQING_DEVICE = "dongtou-luxi-sync1", "yueqing-longxi-sync1"


@pytest.fixture
def url(world: World) -> Iterator[str]:
    with served(world.app) as base:
        yield base


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of a server-sent event stream, heartbeats skipped."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


def hear(stream: Iterator[tuple[str, dict[str, Any]]], alert_id: int, kind: str
         ) -> dict[str, Any]:
    """The alert's ``kind`` event, read from the stream's changes; every change before it
    is about this alert only (the client's read timeout bounds the wait)."""
    for name, data in stream:
        if name != "change":
            continue
        assert {a["id"] for a in data["alerts"]} <= {alert_id}, data
        for alert in data["alerts"]:
            if alert["kind"] == kind:
                return dict(alert)
    raise AssertionError("the stream ended")


def test_each_person_hears_only_their_scope_and_other_processes_writes(
    world: World, url: str
) -> None:
    http = httpx.Client(base_url=url, timeout=20)
    with (http.stream("GET", "/api/v1/live", headers=world.headers("dt-dianjiao")) as dongtou,
          http.stream("GET", "/api/v1/live", headers=world.headers("yq-dianjiao")) as yueqing):
        assert dongtou.headers["content-type"].startswith("text/event-stream")
        dongtou_events, yueqing_events = events(dongtou), events(yueqing)
        assert next(dongtou_events)[0] == next(yueqing_events)[0] == "hello"

        first = world.take_offline(DONGTOU_DEVICE)
        fired = hear(dongtou_events, first, "fired")
        assert (fired["severity"], fired["state"], fired["news"]) == ("critical", "firing", True)
        assert fired["summary_zh"] == "洞头区鹿西乡小学 同步课堂教室：设备离线"

        # Yueqing hears its own alert, and nothing of Dongtou's before it.
        second = world.take_offline(YUEQING_DEVICE)
        assert hear(yueqing_events, second, "fired")["news"]

        # Another process's write: a row in the database, no hook in this one.
        with session_scope(world.sessions) as session:
            session.add(AlertEvent(alert_id=first, at=world.clock(), kind="acknowledged",
                                   actor="dt-shiyan-tech", text="另一进程 other process"))
        assert not hear(dongtou_events, first, "acknowledged")["news"]

    # A page gone is a listener gone (nothing queues up for it).
    assert wait_until(lambda: world.app.state.change_feed.listening == 0)
    assert http.get("/api/v1/live").status_code == 401  # no cookie, no bearer: no stream


def test_alert_filters_narrow_within_the_scope(world: World) -> None:
    dongtou = world.take_offline(DONGTOU_DEVICE)
    yueqing = world.take_offline(YUEQING_DEVICE)

    def ids(username: str, **params: Any) -> list[int]:
        reply = world.get(username, "/api/v1/alerts", params=params)
        assert reply.status_code == 200, reply.text
        return [a["id"] for a in reply.json()]

    county = world.get("admin", "/api/v1/counties").json()
    by_name = {c["name"]: c["id"] for c in county}
    assert ids("admin", county_id=by_name["洞头区"]) == [dongtou]
    assert ids("admin", q="鹿西") == [dongtou]
    assert ids("admin", q="longxi") == [yueqing]
    assert ids("admin", severity="critical", state="firing") == [yueqing, dongtou]
    assert ids("admin", severity="info") == []
    assert ids("admin", state="resolved") == []
    # A filter naming another county never shows it to a county technician.
    assert ids("dt-dianjiao", county_id=by_name["乐清市"]) == []
    assert ids("dt-dianjiao", q="longxi") == []
    bad = world.get("admin", "/api/v1/alerts", params={"severity": "fatal"})
    assert bad.status_code == 422


def test_a_stopping_server_ends_the_streams_cleanly(world: World) -> None:
    """A page's stream never ends by itself; a stop must not wait for it, nor cut it
    mid-chunk (the browser then reconnects to the next server)."""
    http = httpx.Client(timeout=20)
    with contextlib.ExitStack() as server:
        base = server.enter_context(served(world.app))
        with http.stream("GET", f"{base}/api/v1/live",
                         headers=world.headers("dt-dianjiao")) as response:
            stream = events(response)
            assert next(stream)[0] == "hello"
            server.close()  # uvicorn stops: its thread is joined (for at most 10 s)
            uvicorn_threads = [t for t in threading.enumerate() if t.name.startswith("uvicorn-")]
            assert uvicorn_threads == []
            assert list(stream) == []  # the stream ended cleanly, with no more events


def test_changes_read_the_same_on_postgres(postgres: str, tmp_path: Path) -> None:
    """What the poll reads (ids and time marks) on PostgreSQL, as several fleet
    processes share it: a fired alert and an answered check are news once, then not; an
    event whose transaction commits after one with a higher id is still told."""
    sessions = fresh_db(tmp_path, fresh_database(postgres, f"live_{uuid.uuid4().hex[:8]}"))
    load_pilot(sessions)
    pg = open_world(sessions)
    with session_scope(sessions) as session:
        start, _ = read_changes(session, Cursor())
    alert = pg.take_offline(DONGTOU_DEVICE)
    lesson = pg.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(minutes=30))
    pg.add_check(lesson, YUEQING_DEVICE, "pass", NOW)
    with session_scope(sessions) as session:
        cursor, change = read_changes(session, start)
        assert change is not None
        assert (alert, "fired") in {(a.id, a.kind) for a in change.alerts}
        assert change.devices == {YUEQING_DEVICE}
        person = session.scalars(select(Person).where(Person.username == "dt-dianjiao")).one()
        mine = change.for_scope(session, Scope(principal_of(session, person)))
        assert mine is not None and mine["devices"] == [] and mine["alerts"]
        assert read_changes(session, cursor) == (cursor, None)

    # Two fleet processes: the event given the lower id commits last, and is still told.
    def event(session: Session, kind: str) -> int:
        row = AlertEvent(alert_id=alert, at=pg.clock(), kind=kind, actor="system")
        session.add(row)
        session.flush()
        return row.id

    with sessions() as late:
        late_id = event(late, "late")
        with session_scope(sessions) as early:
            early_id = event(early, "early")
        assert early_id > late_id
        with session_scope(sessions) as session:
            cursor, change = read_changes(session, cursor)
        assert change is not None and [a.kind for a in change.alerts] == ["early"]
        late.commit()
    with session_scope(sessions) as session:
        cursor, change = read_changes(session, cursor)
        assert change is not None and [a.kind for a in change.alerts] == ["late"]
        assert read_changes(session, cursor) == (cursor, None)
