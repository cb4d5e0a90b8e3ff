from __future__ import annotations

import io
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import CalendarDay, CheckRun, Device, Lesson, LessonMode, School
from fleet.inventory import checked_classrooms, load_inventory
from fleet.timetable import ImportResult, Semester, TimetableError, import_timetable
from fleet.timetable.importer import PREVIEW_MAX
from tests.fleet.pilot import FAST_HASHER

SEM = Semester(date(2026, 9, 1), date(2026, 9, 30), holidays=(date(2026, 9, 25),))
HEAD = ("kind,weekday,date,start,end,subject,grade,teacher,main_school,main_classroom,receivers,"
        "mode,note")
DT_MON = ("weekly,1,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,同步课堂教室,"
          "洞头区鹿西乡小学,live,")
WC_FRI = ("weekly,周五,,10:00,10:45,英语,七年级,赵敏,文成县实验中学,,"
          "文成县西坑初级中学/同步课堂教室,直播,")
EXAMPLE = Path(__file__).resolve().parents[2] / "provisioning" / "timetable.example.csv"


def csv(*rows: str, head: str = HEAD) -> bytes:
    return ("\n".join([head, *rows]) + "\n").encode()


def run(factory: SessionFactory, data: bytes, name: str = "t.csv",
        semester: Semester = SEM) -> ImportResult:
    with session_scope(factory) as s:
        return import_timetable(s, data, name, semester=semester)


def lessons(s: Session) -> list[Lesson]:
    return list(s.scalars(select(Lesson).order_by(Lesson.starts_at, Lesson.id)))


def count(s: Session, model: type[Any]) -> int:
    return s.scalar(select(func.count()).select_from(model)) or 0


def test_weekly_rows_expand_over_the_semester_minus_holidays(pilot: SessionFactory) -> None:
    result = run(pilot, csv(DT_MON, WC_FRI, "holiday,,2026-09-14,,,,,,,,,,教师培训"))
    # Mondays 7/14/21/28 minus the file's 14th; Fridays 4/11/18/25 minus the semester's 25th
    assert (result.lessons, result.created, result.holidays) == (6, 6, 2)
    with session_scope(pilot) as s:
        got = [(x.subject, x.starts_at, x.ends_at) for x in lessons(s)]
        assert got[:2] == [
            ("英语", datetime(2026, 9, 4, 2, 0, tzinfo=UTC),
             datetime(2026, 9, 4, 2, 45, tzinfo=UTC)),
            ("数学", datetime(2026, 9, 7, 0, 0, tzinfo=UTC),
             datetime(2026, 9, 7, 0, 40, tzinfo=UTC)),
        ]
        days = sorted(x.starts_at.date() for x in lessons(s))
        assert date(2026, 9, 14) not in days and date(2026, 9, 25) not in days
        # the file's holidays are its schools' own, not the whole province's
        schools = {x.main_classroom.school_id for x in lessons(s)}
        assert {(h.day, h.name, h.level, h.place_id) for h in s.scalars(select(CalendarDay))} \
            == {(day, name, "school", school) for school in schools
                for day, name in ((date(2026, 9, 14), "教师培训"), (date(2026, 9, 25), "节假日"))}
        first = lessons(s)[1]
        assert first.source == "timetable:t.csv" and first.teacher == "林晓红"
        assert [r.classroom.school.name for r in first.receivers] == ["洞头区鹿西乡小学"]
        assert first.main_classroom.school.name == "洞头区实验小学"


def test_one_off_lesson_and_known_holidays(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        s.add(CalendarDay(day=date(2026, 9, 7), name="国庆调休"))
    once = ("once,,2026-09-16,15:00,15:40,科学,六年级,林晓红,洞头区实验小学,同步课堂教室,"
            "洞头区鹿西乡小学,,公开课")
    result = run(pilot, csv(DT_MON, once))
    assert result.lessons == 4  # Mondays 14/21/28 + the one-off
    with session_scope(pilot) as s:
        science = [x for x in lessons(s) if x.subject == "科学"]
        assert [x.starts_at for x in science] == [datetime(2026, 9, 16, 7, 0, tzinfo=UTC)]
        assert science[0].mode == LessonMode.LIVE


def test_kind_is_inferred_from_weekday_or_date(pilot: SessionFactory) -> None:
    weekly = DT_MON.replace("weekly,", ",", 1)
    once = ",,2026-09-16,15:00,15:40,科学,,,洞头区实验小学,,洞头区鹿西乡小学,,"
    assert run(pilot, csv(weekly, once)).lessons == 5


def test_local_times_are_shanghai_without_daylight_saving(pilot: SessionFactory) -> None:
    # Europe and America change clocks in March and November; Shanghai never does.
    year = Semester(date(2027, 2, 22), date(2027, 11, 30))
    run(pilot, csv(DT_MON.replace("08:00", "07:30")), semester=year)
    with session_scope(pilot) as s:
        starts = [x.starts_at for x in lessons(s)]
        assert len(starts) == 41
        assert {(t.hour, t.minute, t.weekday()) for t in starts} == {(23, 30, 6)}  # Sunday UTC
        assert all(t.tzinfo is not None and t.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
                   for t in starts)


def test_a_school_in_another_time_zone_uses_its_own(pilot: SessionFactory) -> None:
    doc = {"counties": [{"name": "乌鲁木齐市", "schools": [
        {"name": "示例学校", "kind": "town", "timezone": "Asia/Urumqi",
         "classrooms": [{"name": "同步课堂教室"}]}]}]}
    with session_scope(pilot) as s:
        load_inventory(s, doc, hasher=FAST_HASHER)
    row = "once,,2026-09-16,08:00,08:40,数学,,,示例学校,,洞头区鹿西乡小学,,"
    run(pilot, csv(row))
    with session_scope(pilot) as s:
        assert lessons(s)[0].starts_at == datetime(2026, 9, 16, 2, 0, tzinfo=UTC)


def test_recorded_lesson_only_checks_the_receivers(pilot: SessionFactory) -> None:
    row = ("weekly,4,,14:00,14:40,科学,五年级,郑一鸣,乐清市城南实验小学,同步课堂教室,"
           "乐清市大荆镇山头小学；乐清市龙西乡小学,录播,")
    run(pilot, csv(row))
    with session_scope(pilot) as s:
        lesson = lessons(s)[0]
        assert lesson.mode == LessonMode.RECORDED
        assert sorted(c.school.name for c in checked_classrooms(lesson)) == [
            "乐清市大荆镇山头小学", "乐清市龙西乡小学"]


def test_xlsx_with_chinese_headers_and_a_holiday_sheet(pilot: SessionFactory) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "课表"
    sheet.append(["2026学年第一学期 乐清市城南实验小学 同步课堂课表"])
    sheet.append([])
    sheet.append(["序号", "类型", "星期", "日期", "开始", "结束", "学科", "年级", "教师",
                  "主讲学校", "主讲教室", "接收教室", "方式"])
    sheet.append([1, "每周", 2, None, time(9, 0), time(9, 40), "英语", "四年级", "郑一鸣",
                  "乐清市城南实验小学", "同步课堂教室", "乐清市大荆镇山头小学、乐清市龙西乡小学",
                  "直播"])
    sheet.append([2, "单次", None, date(2026, 9, 17), "14:00", "14:40", "科学", "五年级", "郑一鸣",
                  "乐清市城南实验小学", "同步课堂教室", "乐清市龙西乡小学", "录播"])
    holidays = book.create_sheet("节假日")
    holidays.append(["日期", "名称"])
    holidays.append([date(2026, 9, 8), "教师节活动"])
    buf = io.BytesIO()
    book.save(buf)
    result = run(pilot, buf.getvalue(), "乐清.xlsx")
    sheet["C4"] = "周八"  # 星期 of the first lesson: errors name the sheet and its row
    buf = io.BytesIO()
    book.save(buf)
    with pytest.raises(TimetableError) as err:
        run(pilot, buf.getvalue(), "乐清.xlsx")
    assert [(e.sheet, e.line, e.column) for e in err.value.errors] == [("课表", 4, "星期")]
    # Tuesdays 1/8/15/22/29 minus the sheet's 8th, plus the one-off
    assert (result.lessons, result.holidays) == (5, 2)
    with session_scope(pilot) as s:
        got = lessons(s)
        assert got[0].starts_at == datetime(2026, 9, 1, 1, 0, tzinfo=UTC)
        assert len(got[0].receivers) == 2
        recorded = [x for x in got if x.mode == LessonMode.RECORDED]
        assert [x.starts_at for x in recorded] == [datetime(2026, 9, 17, 6, 0, tzinfo=UTC)]
        assert s.scalars(select(CalendarDay.name).where(CalendarDay.day == date(2026, 9, 8))
                         ).all() == ["教师节活动"]


def test_example_timetable_imports(pilot: SessionFactory) -> None:
    autumn = Semester(date(2026, 9, 1), date(2027, 1, 22))
    result = run(pilot, EXAMPLE.read_bytes(), EXAMPLE.name, semester=autumn)
    assert result.holidays == 6 and result.created == result.lessons > 100
    # The preview lists the first lines by date and classroom, however many there are.
    order = [(c.day, c.classroom, c.starts) for c in result.changes]
    assert len(order) == min(result.created, PREVIEW_MAX) and order == sorted(order)
    assert order[0][0] == date(2026, 9, 1) and {c.change for c in result.changes} == {"added"}
    with session_scope(pilot) as s:
        assert not [x for x in lessons(s) if x.starts_at.date() == date(2026, 10, 5)]


GOOD = DT_MON
BAD_ROWS = [
    ("unknown classroom", DT_MON.replace("同步课堂教室", "多媒体教室"), "main_classroom",
     "unknown classroom"),
    ("unknown school", DT_MON.replace("洞头区鹿西乡小学", "不存在的小学"), "receivers",
     "unknown school"),
    ("end before start", DT_MON.replace("08:00,08:40", "09:00,08:30"), "end", "not after start"),
    ("bad weekday", DT_MON.replace("weekly,1,", "weekly,8,"), "weekday", "bad weekday"),
    ("bad time", DT_MON.replace("08:00", "8点"), "start", "bad time"),
    ("bad date", DT_MON.replace("weekly,1,,", "once,,2026-02-30,"), "date", "bad date"),
    ("date outside semester", DT_MON.replace("weekly,1,,", "once,,2026-10-05,"), "date",
     "outside the semester"),
    ("one-off on a holiday", DT_MON.replace("weekly,1,,", "once,,2026-09-25,"), "date",
     "is a holiday"),
    ("receiver is the main classroom", DT_MON.replace("洞头区鹿西乡小学", "洞头区实验小学"),
     "receivers", "is the main one"),
    ("no receiver", DT_MON.replace("洞头区鹿西乡小学", ""), "receivers",
     "at least one receiving classroom"),
    ("receiver twice", DT_MON.replace("洞头区鹿西乡小学", "洞头区鹿西乡小学;洞头区鹿西乡小学"),
     "receivers", "listed twice"),
    ("bad mode", DT_MON.replace(",live,", ",直播课,"), "mode", "live or recorded"),
    ("bad kind", DT_MON.replace("weekly,", "每月,", 1), "kind", "weekly, once, holiday or workday"),
    ("weekly with a date", DT_MON.replace("weekly,1,,", "weekly,1,2026-09-07,"), "date",
     "takes no date"),
    ("no subject", DT_MON.replace("数学", ""), "subject", "subject is required"),
    ("main classroom double-booked", DT_MON.replace("08:00,08:40", "08:20,09:00"), "start",
     "double-booked"),
    ("receiving classroom double-booked",
     "once,,2026-09-21,08:30,09:10,科学,,,洞头区鹿西乡小学,,文成县西坑初级中学,,", "start",
     "double-booked"),
]


@pytest.mark.parametrize(("row", "column", "reason"), [c[1:] for c in BAD_ROWS],
                         ids=[c[0] for c in BAD_ROWS])
def test_bad_row_is_reported_with_line_and_nothing_applied(
        pilot: SessionFactory, row: str, column: str, reason: str) -> None:
    holiday = "holiday,,2026-09-14,,,,,,,,,,"
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(GOOD, holiday, row))
    bad = [e for e in err.value.errors if e.line == 4]
    assert bad, err.value.errors
    assert any(e.column == column and reason in e.reason for e in bad), bad
    assert all(e.line == 4 for e in err.value.errors), "the good rows were blamed"
    assert "line 4" in str(err.value)
    with session_scope(pilot) as s:
        assert count(s, Lesson) == 0 and count(s, CalendarDay) == 0


def test_every_bad_row_is_listed_at_once(pilot: SessionFactory) -> None:
    rows = [DT_MON.replace("08:40", "07:40"), GOOD.replace("weekly,1", "weekly,3"),
            DT_MON.replace("weekly,1", "weekly,9"), DT_MON.replace("数学", "")]
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(*rows))
    assert sorted({e.line for e in err.value.errors}) == [2, 4, 5]


def test_chinese_headers_name_the_column_as_written(pilot: SessionFactory) -> None:
    head = "类型,星期,日期,开始,结束,学科,年级,教师,主讲学校,主讲教室,接收教室,方式,备注"
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(DT_MON.replace("weekly,1", "每周,周八"), head=head))
    assert [(e.line, e.column) for e in err.value.errors] == [(2, "星期")]


def test_header_problems_are_reported_on_line_one(pilot: SessionFactory) -> None:
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(DT_MON, head=HEAD.replace("subject", "lesson").replace(",receivers", ",x")))
    found = {(e.line, e.column) for e in err.value.errors}
    assert {(1, "lesson"), (1, "x")} <= found
    assert any("subject" in e.column for e in err.value.errors if "missing" in e.reason)


@pytest.mark.parametrize(("data", "name", "reason"), [
    (b"a,b", "t.ods", "only .csv and .xlsx"),
    (b"not a zip", "t.xlsx", "not a valid .xlsx"),
    (b"", "t.csv", "no header row"),
    (b"\xff\xfe\x00\xd8bad", "t.csv", "not UTF-8 or GB18030"),
])
def test_unusable_files_are_refused(pilot: SessionFactory, data: bytes, name: str,
                                    reason: str) -> None:
    with pytest.raises(TimetableError) as err:
        run(pilot, data, name)
    assert [e.line for e in err.value.errors] == [0]
    assert reason in err.value.errors[0].reason


def test_gb18030_csv_from_excel_is_read(pilot: SessionFactory) -> None:
    head = "类型,星期,日期,开始,结束,学科,年级,教师,主讲学校,主讲教室,接收教室,方式,备注"
    data = ("\r\n".join([head, DT_MON.replace("live", "直播")]) + "\r\n").encode("gb18030")
    assert run(pilot, data).lessons == 4


def test_overlap_with_another_schools_lessons_is_refused(pilot: SessionFactory) -> None:
    run(pilot, csv(DT_MON), "a.csv")
    # Luxi's own schedule, in the hour its classroom receives Dongtou's lesson
    once = "once,,2026-09-21,08:30,09:00,科学,,,洞头区鹿西乡小学,,洞头区实验小学/同步课堂教室,,"
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(once), "b.csv")
    assert [e.line for e in err.value.errors] == [2]
    assert all("timetable:a.csv" in e.reason for e in err.value.errors)
    with session_scope(pilot) as s:
        assert {x.source for x in lessons(s)} == {"timetable:a.csv"}


def test_reimport_replaces_the_files_lessons_in_place(pilot: SessionFactory) -> None:
    first = run(pilot, csv(DT_MON, WC_FRI))
    assert first.created == 7
    with session_scope(pilot) as s:
        ids = {(x.main_classroom_id, x.starts_at): x.id for x in lessons(s)}
    again = run(pilot, csv(DT_MON, WC_FRI))
    assert (again.created, again.updated, again.unchanged, again.removed) == (0, 0, 7, 0)
    with session_scope(pilot) as s:
        assert {(x.main_classroom_id, x.starts_at): x.id for x in lessons(s)} == ids

    with session_scope(pilot) as s:
        friday = next(x for x in lessons(s) if x.subject == "英语")
        device = s.scalars(select(Device).where(Device.classroom_id == friday.main_classroom_id)
                           ).one()
        s.add(CheckRun(request_id="c1", lesson_id=friday.id, device_id=device.id, phase="first",
                       requested_at=friday.starts_at))
        checked_id = friday.id
    # A file of one school's lessons is that school's schedule: Wencheng's stay.
    only_dt = run(pilot, csv(DT_MON.replace("林晓红", "叶青")))
    assert (only_dt.created, only_dt.updated, only_dt.removed) == (0, 4, 0)
    thursday = WC_FRI.replace("weekly,周五", "weekly,周四")
    changed = run(pilot, csv(DT_MON.replace("林晓红", "叶青"), thursday), "renamed.csv")
    assert (changed.created, changed.updated, changed.unchanged, changed.removed) == (4, 0, 4, 3)
    with session_scope(pilot) as s:
        left = lessons(s)
        assert {x.teacher for x in left if not x.cancelled} == {"叶青", "赵敏"}
        # the Friday with a check run is kept, cancelled; the other two are gone
        fridays = [x for x in left if x.subject == "英语" and x.starts_at.weekday() == 4]
        assert [(x.id, x.cancelled) for x in fridays] == [(checked_id, True)]
    restored = run(pilot, csv(DT_MON.replace("林晓红", "叶青"), WC_FRI))
    assert (restored.created, restored.updated, restored.removed) == (2, 1, 4)
    with session_scope(pilot) as s:
        assert s.get(Lesson, checked_id).cancelled is False  # type: ignore[union-attr]


def test_same_time_in_two_counties_is_no_conflict(pilot: SessionFactory) -> None:
    taishun = ("weekly,1,,08:00,08:40,音乐,二年级,潘晓燕,泰顺县罗阳第二小学,,泰顺县竹里乡小学,,")
    assert run(pilot, csv(DT_MON, taishun)).lessons == 8
    with session_scope(pilot) as s:
        assert count(s, School) == 9


def test_a_long_preview_lists_the_first_500_by_date_and_counts_all(
        pilot: SessionFactory) -> None:
    rows = [f"weekly,{day},,{hour:02d}:00,{hour:02d}:40,数学,,,洞头区实验小学,,洞头区鹿西乡小学,,"
            for day in range(1, 6) for hour in (8, 9, 10, 11, 14)]
    year = Semester(date(2026, 9, 1), date(2027, 8, 31))
    with session_scope(pilot) as s:
        preview = import_timetable(s, csv(*rows), "t.csv", semester=year, dry_run=True)
    assert preview.created == preview.lessons > 2 * PREVIEW_MAX
    order = [(c.day, c.starts) for c in preview.changes]
    assert len(order) == PREVIEW_MAX and order == sorted(order)
    assert order[0] == (date(2026, 9, 1), "08:00")  # a Tuesday, the semester's first day
    with session_scope(pilot) as s:
        assert count(s, Lesson) == 0
