"""Bounded imports: capped error lists, files read as streams, merged .xlsx cells, and
messages that read correctly in both languages."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Lesson
from fleet.timetable import Semester, TimetableError, import_timetable
from fleet.timetable.errors import MAX_ERRORS
from fleet.timetable.table import MAX_UNPACKED
from tests.fleet.test_timetable import DT_MON, HEAD, SEM, csv, run

ROW = DT_MON.split(",")


def _lessons(factory: SessionFactory) -> int:
    with session_scope(factory) as s:
        return s.scalar(select(func.count()).select_from(Lesson)) or 0


def test_a_refusal_lists_the_first_errors_and_counts_them_all(pilot: SessionFactory) -> None:
    bad = [DT_MON.replace("08:40", f"25:{i % 60:02d}") for i in range(250)]
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(*bad))
    assert err.value.total == 250
    assert [e.line for e in err.value.errors] == list(range(2, 2 + MAX_ERRORS))
    text = str(err.value)
    assert "共 250 处错误" in text and "250 error(s)" in text
    assert "仅列出前 100 处 / only the first 100 are listed" in text
    assert "line 101" in text and "line 102 " not in text
    assert _lessons(pilot) == 0


def test_the_cap_is_the_callers_choice(pilot: SessionFactory) -> None:
    bad = [DT_MON.replace("数学", "") for _ in range(7)]
    with session_scope(pilot) as s, pytest.raises(TimetableError) as err:
        import_timetable(s, csv(*bad), "t.csv", semester=SEM, max_errors=3)
    assert (err.value.total, [e.line for e in err.value.errors]) == (7, [2, 3, 4])


def test_progress_is_told_every_thousand_rows_and_at_the_end(pilot: SessionFactory) -> None:
    seen: list[int] = []
    bad = [DT_MON.replace("数学", "")] * 2500
    with session_scope(pilot) as s, pytest.raises(TimetableError) as err:
        import_timetable(s, csv(*bad), "t.csv", semester=SEM, progress=seen.append)
    assert (seen, err.value.total) == ([1000, 2000, 2500], 2500)


def test_a_file_object_is_read_as_a_stream(pilot: SessionFactory, tmp_path: Path) -> None:
    head = "类型,星期,日期,开始,结束,学科,年级,教师,主讲学校,主讲教室,接收教室,方式,备注"
    path = tmp_path / "课表.csv"
    path.write_bytes(("\r\n".join([head, DT_MON.replace("live", "直播")]) + "\r\n")
                     .encode("gb18030"))
    rows: list[int] = []
    with session_scope(pilot) as s, path.open("rb") as stream:
        result = import_timetable(s, stream, path.name, semester=SEM, progress=rows.append)
    assert (result.created, rows) == (4, [1])
    assert _lessons(pilot) == 4


def test_a_duplicate_row_reads_correctly_in_both_languages(pilot: SessionFactory) -> None:
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(DT_MON, DT_MON))
    reasons = {e.reason for e in err.value.errors}
    room = "洞头区实验小学/同步课堂教室"
    assert reasons == {
        f"教室 {room} 在 2026-09-07 08:00 与第 2 行时间冲突 / "
        f"classroom {room} is double-booked at 2026-09-07 08:00 with line 2",
    }
    assert [e.line for e in err.value.errors] == [3]


def _merged_book(school: str) -> bytes:
    """Three lessons of one main school, its name in one vertically merged cell (J2:J4)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "课表"
    sheet.append(HEAD.split(","))
    for weekday in (1, 2, 3):
        sheet.append([*ROW[:1], weekday, *ROW[2:8], school if weekday == 1 else None, *ROW[9:]])
    sheet.merge_cells("I2:I4")
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_merged_school_cells_are_read_as_their_value(pilot: SessionFactory) -> None:
    result = run(pilot, _merged_book("洞头区实验小学"), "merged.xlsx")
    assert result.created == 14  # Mondays 7-28 (4), Tuesdays 1-29 (5), Wednesdays 2-30 (5)
    with session_scope(pilot) as s:
        schools = {x.main_classroom.school.name for x in s.scalars(select(Lesson))}
    assert schools == {"洞头区实验小学"}


def test_a_bad_merged_cell_names_the_merged_range(pilot: SessionFactory) -> None:
    with pytest.raises(TimetableError) as err:
        run(pilot, _merged_book("没有这所学校"), "merged.xlsx")
    assert [(e.line, e.column) for e in err.value.errors] == [
        (2, "main_school"), (3, "main_school"), (4, "main_school")]
    zh, _, en = err.value.errors[1].reason.partition(" / ")
    assert "该格属于合并单元格 I2:I4" in zh and "没有这所学校" in zh
    assert "merged cells I2:I4" in en and "unknown school" in en
    assert _lessons(pilot) == 0


def test_a_sheet_with_a_wrong_dimension_is_read_whole(pilot: SessionFactory) -> None:
    # Some school tools write <dimension ref="A1"/> whatever the sheet holds; read-only
    # mode trusts it unless told otherwise, which would cut every row to one cell.
    data = _merged_book("洞头区实验小学")
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            body = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body.replace(b'<dimension ref="A1:M4" />', b'<dimension ref="A1" />')
                assert b'<dimension ref="A1" />' in body
            target.writestr(item, body)
    assert run(pilot, out.getvalue(), "dim.xlsx").created == 14


def test_semester_backwards_is_refused_in_both_languages(pilot: SessionFactory) -> None:
    with pytest.raises(TimetableError) as err:
        run(pilot, csv(DT_MON), semester=Semester(date(2026, 9, 30), date(2026, 9, 1)))
    assert err.value.errors[0].reason == "学期结束早于开始 / the semester ends before it starts"


def test_a_workbook_that_unpacks_too_large_is_refused_unread(pilot: SessionFactory) -> None:
    out = io.BytesIO(_merged_book("洞头区实验小学"))
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as book:
        # Compresses to about 130 KB: what a zip bomb looks like from outside.
        book.writestr("xl/media/padding.bin", bytes(MAX_UNPACKED))
    with pytest.raises(TimetableError) as err:
        run(pilot, out.getvalue(), "bomb.xlsx")
    assert [e.line for e in err.value.errors] == [0]
    assert "unpacks to more than 134217728 bytes" in err.value.errors[0].reason
    assert _lessons(pilot) == 0


def test_a_sheet_wide_merge_fills_only_the_columns_a_timetable_has(
        pilot: SessionFactory) -> None:
    book = openpyxl.load_workbook(io.BytesIO(_merged_book("洞头区实验小学")))
    sheet = book["课表"]
    sheet.append(["2026 秋季"])
    sheet.merge_cells("A5:XFD5")  # a title line across the whole sheet, below the lessons
    buf = io.BytesIO()
    book.save(buf)
    with pytest.raises(TimetableError) as err:
        run(pilot, buf.getvalue(), "wide.xlsx")
    assert {e.line for e in err.value.errors} == {5}  # the title is read as a bad row
    assert all("A5:XFD5" in e.reason for e in err.value.errors)
