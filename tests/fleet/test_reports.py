"""Reports per classroom, school, pair and county, from what the fleet really records:
lessons, check runs answered before the start, and the alert engine's alerts."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from fleet.db.base import session_scope
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
