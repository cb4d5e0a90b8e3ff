"""Schedules, calendars, changes on the day and semesters through the API: previews that
write nothing, scope on every change, a county calendar published once, and reports kept
per semester across a roll-over."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select

from fleet.db.base import session_scope
from fleet.db.models import County, Lesson
from tests.fleet.api_world import World, world

__all__ = ["world"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEAD = "kind,weekday,date,start,end,subject,grade,teacher,main_school,main_classroom,receivers,mode"
DT_MON = ("weekly,1,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,同步课堂教室,"
          "洞头区鹿西乡小学,live")
SPRING = {"semester_start": "2026-03-02", "semester_end": "2026-03-29",
          "semester_name": "2025学年第二学期"}
AUTUMN = {"semester_start": "2026-03-30", "semester_end": "2026-04-26",
          "semester_name": "2026学年第一学期"}


def _upload(w: World, user: str, form: dict[str, str], *rows: str,
            name: str = "课表.csv") -> httpx.Response:
    data = ("\n".join([HEAD, *rows]) + "\n").encode()
    return w.post(user, "/api/v1/timetable/import", files={"file": (name, data)}, data=form)


def _count(w: World) -> int:
    with session_scope(w.sessions) as s:
        return s.scalar(select(func.count()).select_from(Lesson)
                        .where(Lesson.cancelled.is_(False))) or 0


def _lesson_on(w: World, day: int) -> dict[str, Any]:
    lessons = w.get("dt-dianjiao", "/api/v1/lessons",
                    params={"from": f"2026-03-{day:02d}"}).json()
    (lesson,) = [x for x in lessons if x["subject"] == "数学" and x["teacher"] == "林晓红"]
    return lesson  # type: ignore[no-any-return]


def test_a_dry_run_answers_the_preview_and_writes_nothing(world: World) -> None:
    before = _count(world)
    preview = _upload(world, "dt-dianjiao", SPRING | {"dry_run": "true"}, DT_MON)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["dry_run"], body["created"], body["schedule"]) == (True, 4, "洞头区实验小学")
    assert [(c["change"], c["day"], c["starts"]) for c in body["changes"]] == [
        ("added", f"2026-03-{d:02d}", "08:00") for d in (2, 9, 16, 23)]
    assert _count(world) == before
    applied = _upload(world, "dt-dianjiao", SPRING, DT_MON).json()
    assert (applied["dry_run"], applied["created"]) == (False, 4)
    assert _count(world) == before + 4
    # Another county's technician may not preview, let alone replace, Dongtou's schedule.
    foreign = _upload(world, "yq-dianjiao", SPRING | {"dry_run": "true"}, DT_MON)
    assert foreign.status_code == 403
    refused = _upload(world, "dt-dianjiao", SPRING | {"school": "不存在小学"}, DT_MON)
    assert refused.status_code == 422 and "不存在小学" in refused.text


def test_changes_on_the_day_follow_scope_and_refuse_a_busy_room(world: World) -> None:
    assert _upload(world, "dt-dianjiao", SPRING, DT_MON).status_code == 200
    lesson = _lesson_on(world, 9)
    # A school technician reads; another county's technician does not even see it.
    assert world.post("dt-luxi-tech", f"/api/v1/lessons/{lesson['id']}/cancel").status_code == 403
    assert world.post("yq-dianjiao", f"/api/v1/lessons/{lesson['id']}/cancel").status_code == 404
    starts = datetime(2026, 3, 9, 14, 0, tzinfo=SHANGHAI)
    moved = world.post("dt-dianjiao", f"/api/v1/lessons/{lesson['id']}/move",
                       json={"starts_at": starts.isoformat()})
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["starts_at"]) == starts
    assert datetime.fromisoformat(moved.json()["ends_at"]) == starts + timedelta(minutes=40)
    # A lesson added in the same room at 14:20 clashes; at 15:00 it is fine.
    room, luxi = lesson["main_classroom"]["id"], lesson["receivers"][0]["id"]
    new = {"subject": "科学", "main_classroom_id": room, "receiver_ids": [luxi],
           "starts_at": (starts + timedelta(minutes=20)).isoformat(),
           "ends_at": (starts + timedelta(minutes=60)).isoformat()}
    busy = world.post("dt-dianjiao", "/api/v1/lessons", json=new)
    assert busy.status_code == 409 and "#" in busy.json()["detail"]
    new |= {"starts_at": (starts + timedelta(hours=1)).isoformat(),
            "ends_at": (starts + timedelta(hours=1, minutes=40)).isoformat()}
    added = world.post("dt-dianjiao", "/api/v1/lessons", json=new)
    assert added.status_code == 201, added.text
    assert added.json()["readiness"]["state"] in {"pending", "unknown"}
    yueqing = world.classroom("乐清市城南实验小学")
    foreign = world.post("dt-dianjiao", "/api/v1/lessons", json=new | {
        "main_classroom_id": yueqing})
    assert foreign.status_code == 403
    cancelled = world.post("dt-dianjiao", f"/api/v1/lessons/{added.json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    again = world.post("dt-dianjiao", f"/api/v1/lessons/{added.json()['id']}/cancel")
    assert again.status_code == 409
    # The next import keeps the move and says so.
    preview = _upload(world, "dt-dianjiao", SPRING | {"dry_run": "true"}, DT_MON).json()
    assert [(c["change"], c["day"]) for c in preview["changes"]] == [("conflict", "2026-03-09")]


def test_a_county_publishes_its_calendar_once_for_all_its_schools(world: World) -> None:
    before = _count(world)
    assert _upload(world, "dt-dianjiao", SPRING, DT_MON).status_code == 200
    with session_scope(world.sessions) as s:
        dongtou = s.scalars(select(County.id).where(County.name == "洞头区")).one()
        yueqing = s.scalars(select(County.id).where(County.name == "乐清市")).one()
    day = {"day": "2026-03-16", "name": "春季运动会", "level": "county", "place_id": dongtou}
    assert world.post("yq-dianjiao", "/api/v1/holidays", json={"days": [day]}).status_code == 403
    assert world.post("dt-luxi-tech", "/api/v1/holidays", json={"days": [day]}).status_code == 403
    province = {"day": "2026-03-16", "level": "province"}
    assert world.post("dt-dianjiao", "/api/v1/holidays",
                      json={"days": [province]}).status_code == 403
    published = world.post("dt-dianjiao", "/api/v1/holidays", json={"days": [day]})
    assert published.status_code == 200, published.text
    assert published.json()["lessons_cancelled"] == 1  # Monday 16 March's lesson
    listed = world.get("dt-luxi-tech", "/api/v1/holidays", params={"from": "2026-03-01"}).json()
    assert [(d["day"], d["level"], d["name"]) for d in listed] == [
        ("2026-03-16", "county", "春季运动会")]
    assert world.get("yq-longxi-tech", "/api/v1/holidays",
                     params={"from": "2026-03-01"}).json() == []
    assert yueqing != dongtou
    # Re-importing Dongtou's schedule keeps the 16th closed: nothing comes back.
    preview = _upload(world, "dt-dianjiao", SPRING | {"dry_run": "true"}, DT_MON).json()
    assert (preview["created"], preview["updated"], preview["lessons"]) == (0, 0, 3)
    # A 调休 Sunday published after the import gets Monday's lesson at once; removing the
    # days takes it away again and brings the 16th's lesson back.
    sunday = {"day": "2026-03-22", "name": "调休", "level": "county", "place_id": dongtou,
              "runs_weekday": 1}
    made_up = world.post("dt-dianjiao", "/api/v1/holidays", json={"days": [sunday]}).json()
    assert (made_up["lessons_added"], made_up["lessons_cancelled"]) == (1, 0)
    assert _lesson_on(world, 22)["starts_at"].startswith("2026-03-22T00:00")
    assert _count(world) == before + 4
    for entry in (*made_up["days"], *published.json()["days"]):
        gone = world.client.delete(f"/api/v1/holidays/{entry['id']}",
                                   headers=world.headers("dt-dianjiao"))
        assert gone.status_code == 204, gone.text
    assert _count(world) == before + 4
    assert _lesson_on(world, 16)["starts_at"].startswith("2026-03-16T00:00")


def test_next_semester_imported_alongside_and_ending_one_keep_reports_per_semester(
        world: World) -> None:
    assert _upload(world, "dt-dianjiao", SPRING, DT_MON).status_code == 200
    # Next semester's schedule, imported while this one runs, adds and removes nothing here.
    autumn = _upload(world, "dt-dianjiao", AUTUMN, DT_MON.replace("林晓红", "叶青")).json()
    assert (autumn["created"], autumn["removed"], autumn["semester"]) == (4, 0, "2026学年第一学期")
    semesters = {s["name"]: s["id"] for s in world.get("admin", "/api/v1/semesters").json()}

    def scheduled(name: str) -> int:
        rows = world.get("admin", "/api/v1/reports/school",
                         params={"semester": semesters[name]}).json()
        return sum(r["lessons_scheduled"] for r in rows if r["name"] == "洞头区实验小学")

    assert (scheduled("2025学年第二学期"), scheduled("2026学年第一学期")) == (4, 4)
    end = {"last_day": "2026-03-15"}
    assert world.post("dt-dianjiao", f"/api/v1/semesters/{semesters['2025学年第二学期']}/end",
                      json=end).status_code == 403
    ended = world.post("admin", f"/api/v1/semesters/{semesters['2025学年第二学期']}/end",
                       json=end)
    assert ended.status_code == 200, ended.text
    assert ended.json()["lessons_cancelled"] == 2  # the 16th and the 23rd
    assert (scheduled("2025学年第二学期"), scheduled("2026学年第一学期")) == (2, 4)
