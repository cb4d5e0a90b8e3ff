from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Event
from sqlalchemy import select

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Classroom, Person, School
from fleet.timetable import Semester, classroom_calendar, import_timetable, person_calendar

SEM = Semester(date(2026, 9, 1), date(2026, 9, 30))
HEAD = "类型,星期,日期,开始,结束,学科,年级,教师,主讲学校,主讲教室,接收教室,方式"
ROWS = [
    "每周,周一,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,,洞头区鹿西乡小学,直播",
    "单次,,2026-09-17,14:00,14:40,科学,五年级,郑一鸣,乐清市城南实验小学,,乐清市龙西乡小学,录播",
]
NOW = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def load(factory: SessionFactory, *rows: str, school: str = "") -> None:
    data = ("\n".join([HEAD, *rows]) + "\n").encode()
    with session_scope(factory) as s:
        import_timetable(s, data, "秋季课表.csv", semester=SEM, school=school)


def room_id(factory: SessionFactory, school: str) -> int:
    with session_scope(factory) as s:
        return s.scalars(select(Classroom.id).join(School).where(School.name == school)).one()


def person_id(factory: SessionFactory, username: str) -> int:
    with session_scope(factory) as s:
        return s.scalars(select(Person.id).where(Person.username == username)).one()


def events(data: bytes) -> list[Event]:
    return list(Calendar.from_ical(data).walk("VEVENT"))


def test_classroom_calendar_has_its_lessons_in_shanghai_time(pilot: SessionFactory) -> None:
    load(pilot, *ROWS)
    with session_scope(pilot) as s:
        data = classroom_calendar(s, room_id(pilot, "洞头区鹿西乡小学"), clock=lambda: NOW)
    cal = Calendar.from_ical(data)
    assert "洞头区鹿西乡小学" in str(cal["X-WR-CALNAME"])
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    got = events(data)
    assert len(got) == 4  # the Mondays of September; the 乐清 lesson is not theirs
    first = got[0]
    start = first.decoded("DTSTART")
    assert start == datetime(2026, 9, 7, 8, 0, tzinfo=SHANGHAI)
    assert str(start.tzinfo) == "Asia/Shanghai"
    assert b"DTSTART;TZID=Asia/Shanghai:20260907T080000" in data
    summary = str(first["SUMMARY"])
    assert "二年级数学" in summary and "直播" in summary and "Synchronous lesson" in summary
    assert "林晓红" in str(first["DESCRIPTION"])
    assert first.decoded("DTSTAMP") == NOW
    assert len({str(e["UID"]) for e in got}) == 4
    assert [a["ACTION"] for a in first.walk("VALARM")] == ["DISPLAY"]


def test_uids_survive_a_reimport_and_cancellations_show(pilot: SessionFactory) -> None:
    load(pilot, *ROWS)
    town = room_id(pilot, "乐清市城南实验小学")
    with session_scope(pilot) as s:
        before = {str(e["UID"]): e.decoded("DTSTART") for e in events(classroom_calendar(s, town))}
    load(pilot, *ROWS)
    with session_scope(pilot) as s:
        after = {str(e["UID"]): e.decoded("DTSTART") for e in events(classroom_calendar(s, town))}
    assert after == before and len(after) == 1
    recorded = next(iter(after.values()))
    assert recorded == datetime(2026, 9, 17, 14, 0, tzinfo=SHANGHAI)
    # the school's schedule no longer has the one-off; nothing refers to it, so it is gone
    load(pilot, school="乐清市城南实验小学")
    with session_scope(pilot) as s:
        assert events(classroom_calendar(s, town)) == []


def test_person_calendar_follows_the_schools_they_look_after(pilot: SessionFactory) -> None:
    load(pilot, *ROWS)
    with session_scope(pilot) as s:
        luxi = events(person_calendar(s, person_id(pilot, "dt-luxi-tech")))
        longxi = events(person_calendar(s, person_id(pilot, "yq-longxi-tech")))
        county = events(person_calendar(s, person_id(pilot, "yq-dianjiao")))
        other = events(person_calendar(s, person_id(pilot, "ts-zhuli-tech")))
    assert [str(e["SUMMARY"]).split("/")[0].strip() for e in luxi] == [
        "同步课堂 二年级数学（直播）"] * 4
    assert len(longxi) == 1 and "录播" in str(longxi[0]["SUMMARY"])
    assert [str(e["UID"]) for e in county] == [str(e["UID"]) for e in longxi]
    assert other == []


def test_unknown_classroom_or_person_is_a_lookup_error(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        with pytest.raises(LookupError):
            classroom_calendar(s, 9999)
        with pytest.raises(LookupError):
            person_calendar(s, 9999)
