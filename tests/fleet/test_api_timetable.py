"""Timetable import and calendar feeds through the API."""

from __future__ import annotations

import dataclasses
import io
import threading
from typing import Any

import httpx
import openpyxl
from sqlalchemy import func, select

from fleet.api.import_jobs import ImportJobs
from fleet.db.base import session_scope
from fleet.db.models import Lesson
from tests.fleet.api_world import World, world
from tests.waiting import wait_until

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


def _jobs_for_every_file(w: World, **config: int) -> None:
    """Make every upload a background job (the default is files over 256 KiB)."""
    w.services.config = dataclasses.replace(w.services.config, import_inline_max_bytes=0,
                                            **config)


def _finished(w: World, user: str, url: str) -> dict[str, Any]:
    def done() -> bool:
        return bool(w.get(user, url).json()["state"] not in ("queued", "running"))

    assert wait_until(done, timeout=60)
    body: dict[str, Any] = w.get(user, url).json()
    return body


def test_a_refusal_lists_the_first_100_errors_and_the_total(world: World) -> None:
    bad = [DT_MON.replace("08:40", "25:99") for _ in range(150)]
    reply = _upload(world, "admin", _csv(*bad))
    assert reply.status_code == 422
    body = reply.json()
    assert (body["errors_total"], body["errors_shown"], len(body["detail"])) == (150, 100, 100)
    assert [e["line"] for e in body["detail"]] == list(range(2, 102))
    assert _lessons(world) == 0


def test_a_large_file_is_imported_as_a_job(world: World) -> None:
    _jobs_for_every_file(world)
    reply = _upload(world, "dt-dianjiao", _csv(DT_MON), holidays="2026-03-09")
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert reply.headers["location"] == f"/api/v1/timetable/imports/{job['id']}"
    done = _finished(world, "dt-dianjiao", reply.headers["location"])
    assert (done["state"], done["status"], done["rows"]) == ("done", 200, 1)
    assert (done["result"]["lessons"], done["result"]["created"]) == (3, 3)
    assert _lessons(world) == 3
    # Someone else's job is not theirs to see; an admin sees every job.
    assert world.get("yq-dianjiao", reply.headers["location"]).status_code == 404
    assert world.get("admin", reply.headers["location"]).status_code == 200
    assert world.get("admin", "/api/v1/timetable/imports/nosuchjob").status_code == 404


def test_a_refused_job_says_why_and_applies_nothing(world: World) -> None:
    _jobs_for_every_file(world, import_max_errors=5)
    bad = [DT_MON.replace("08:40", "25:99") for _ in range(12)]
    reply = _upload(world, "admin", _csv(DT_MON, *bad))
    assert reply.status_code == 202
    done = _finished(world, "admin", reply.headers["location"])
    assert (done["state"], done["status"], done["result"]) == ("refused", 422, None)
    problem = done["problem"]
    assert (problem["errors_total"], problem["errors_shown"]) == (12, 5)
    assert [e["line"] for e in problem["detail"]] == [3, 4, 5, 6, 7]
    assert _lessons(world) == 0
    foreign = _upload(world, "dt-dianjiao", _csv(DT_MON, YQ_TUE))
    assert foreign.status_code == 202
    done = _finished(world, "dt-dianjiao", foreign.headers["location"])
    assert (done["state"], done["status"]) == ("refused", 403)
    assert "outside the schools you look after" in done["problem"]["detail"]
    assert _lessons(world) == 0


def test_jobs_wait_their_turn_and_a_full_queue_is_429(world: World) -> None:
    _jobs_for_every_file(world)
    world.services.imports = ImportJobs(workers=1, queue=1)
    busy = threading.Event()
    try:
        # The one worker is taken, so the upload waits in the queue: the answer came
        # without the import having run.
        world.services.imports.submit(0, "other.csv", lambda job: busy.wait(60))
        queued = _upload(world, "admin", _csv(DT_MON))
        assert queued.status_code == 202 and queued.json()["state"] == "queued"
        assert world.client.get("/healthz").status_code == 200
        full = _upload(world, "admin", _csv(DT_MON), name="second.csv")
        assert full.status_code == 429 and full.headers["retry-after"] == "30"
        assert "try again later" in full.json()["detail"]
    finally:
        busy.set()
    assert _finished(world, "admin", queued.headers["location"])["state"] == "done"
    assert _lessons(world) == 4
    world.services.imports.close()


def test_too_large_a_file_is_413(world: World) -> None:
    world.services.config = dataclasses.replace(world.services.config, upload_max_bytes=1000)
    # Declared larger than the limit (with room for the form): refused before reading it.
    huge = _upload(world, "admin", _csv(*[DT_MON] * 2000))
    assert huge.status_code == 413
    assert huge.json()["detail"] == (
        "文件过大，上限 1000 字节 / file too large: the limit is 1000 bytes")
    # Within the form's allowance but over the limit: measured, then refused.
    over = _upload(world, "admin", _csv(*[DT_MON] * 20))
    assert over.status_code == 413
    assert _lessons(world) == 0
    assert _upload(world, "admin", _csv(DT_MON)).status_code == 200
