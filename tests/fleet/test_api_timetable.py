"""Timetable import and calendar feeds through the API."""

from __future__ import annotations

import io

import httpx
import openpyxl
from sqlalchemy import func, select

from fleet.db.base import session_scope
from fleet.db.models import Lesson
from tests.fleet.api_world import World, world

__all__ = ["world"]

HEAD = "kind,weekday,date,start,end,subject,grade,teacher,main_school,main_classroom,receivers,mode"
DT_MON = (
    "weekly,1,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,同步课堂教室,洞头区鹿西乡小学,live"
)
YQ_TUE = "weekly,2,,09:00,09:40,语文,三年级,郑老师,乐清市城南实验小学,,乐清市大荆镇山头小学,live"
SEMESTER = {"semester_start": "2026-03-02", "semester_end": "2026-03-29"}


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEAD, *rows]) + "\n").encode()


def _lessons(w: World) -> int:
    with session_scope(w.sessions) as session:
        return session.scalar(select(func.count()).select_from(Lesson)) or 0


def _upload(
    w: World, user: str, data: bytes, name: str = "课表.csv", **form: str
) -> httpx.Response:
    return w.post(
        user, "/api/v1/timetable/import", files={"file": (name, data)}, data=SEMESTER | form
    )


def test_import_csv_expands_the_semester(world: World) -> None:
    reply = _upload(world, "dt-dianjiao", _csv(DT_MON), holidays="2026-03-09")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["lessons"], body["created"]) == (3, 3)  # 4 Mondays minus the holiday
    assert _lessons(world) == 3


def test_bad_rows_are_reported_with_lines_and_nothing_is_applied(world: World) -> None:
    bad_time = DT_MON.replace("08:40", "25:99")
    bad_school = DT_MON.replace("洞头区鹿西乡小学", "没有这所学校")
    reply = _upload(world, "admin", _csv(DT_MON, bad_time, bad_school))
    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert [e["line"] for e in errors] == [3, 4]
    assert all(e["msg"] for e in errors)
    assert _lessons(world) == 0


def test_import_xlsx(world: World) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "课表"
    sheet.append(HEAD.split(","))
    sheet.append(DT_MON.split(","))
    out = io.BytesIO()
    book.save(out)
    reply = _upload(world, "admin", out.getvalue(), name="timetable.xlsx")
    assert reply.status_code == 200, reply.text
    assert _lessons(world) == 4


def test_bad_form_fields_are_422_and_school_tech_cannot_import(world: World) -> None:
    no_dates = world.post(
        "admin", "/api/v1/timetable/import", files={"file": ("t.csv", _csv(DT_MON))}
    )
    assert no_dates.status_code == 422
    holiday = _upload(world, "admin", _csv(DT_MON), holidays="2026-13-01")
    assert holiday.status_code == 422
    assert _upload(world, "dt-luxi-tech", _csv(DT_MON)).status_code == 403
    assert _lessons(world) == 0


def test_county_tech_cannot_import_another_countys_lessons(world: World) -> None:
    reply = _upload(world, "dt-dianjiao", _csv(DT_MON, YQ_TUE))
    assert reply.status_code == 403
    assert _lessons(world) == 0


def test_calendar_feeds_with_bearer_or_calendar_token(world: World) -> None:
    assert _upload(world, "admin", _csv(DT_MON)).status_code == 200
    room = world.classroom("洞头区鹿西乡小学")
    ics = world.get("dt-luxi-tech", f"/api/v1/classrooms/{room}/calendar.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    assert ics.text.count("BEGIN:VEVENT") == 4
    me = world.get("dt-luxi-tech", "/api/v1/me").json()
    # A calendar app has no bearer header: the link carries the person's calendar token.
    feed = world.client.get(me["calendar_url"])
    assert feed.status_code == 200 and "BEGIN:VEVENT" in feed.text
    room_feed = world.client.get(
        f"/api/v1/classrooms/{room}/calendar.ics",
        params={"token": me["calendar_url"].split("=")[1]},
    )
    assert room_feed.status_code == 200
    forged = me["calendar_url"][:-4] + "0000"
    assert world.client.get(forged).status_code == 401
    foreign = world.classroom("乐清市大荆镇山头小学")
    assert (
        world.get("dt-luxi-tech", f"/api/v1/classrooms/{foreign}/calendar.ics").status_code == 404
    )
    # The calendar token opens calendars only.
    token = me["calendar_url"].split("=")[1]
    assert (
        world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
