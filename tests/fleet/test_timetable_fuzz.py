"""Fuzzing the timetable parser: whatever a file holds, the import answers with its own
row/column errors (TimetableError) or imports; it never fails in any other way, and a
refusal leaves the session as it was.

CSV comes in UTF-8, UTF-8 with BOM and GB18030; workbooks hold text, numbers, dates,
times and booleans in any cell, with merged ranges anywhere.  Cells are drawn both from
anything at all and from near-valid values (real school names, times, kinds), so the
examples reach the checks behind the first failing field too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from openpyxl.utils import get_column_letter
from sqlalchemy import func, select

from fleet.db.base import SessionFactory
from fleet.db.models import Lesson
from fleet.timetable import ImportResult, TimetableError, import_timetable
from fleet.timetable.table import COLUMNS, HOLIDAY_COLUMNS
from tests.fleet.test_timetable import DT_MON, HEAD, SEM, WC_FRI
from tests.fuzzing import FUZZ_EXAMPLES, fuzz_settings

# pytest-timeout's 180 s is for the suite's budget; `make fuzz` gives each test up to a
# second per example.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(180, FUZZ_EXAMPLES))]

SCHOOLS = ("洞头区实验小学", "洞头区鹿西乡小学", "乐清市城南实验小学", "乐清市大荆镇山头小学",
           "文成县西坑初级中学/同步课堂教室", "洞头区/洞头区实验小学", "同步课堂教室")
NEAR_VALID = st.sampled_from([
    "", " ", "weekly", "once", "holiday", "每周", "单次", "节假日", "1", "5", "7", "8", "周三",
    "星期日", "mon", "2026-09-07", "2026-09-25", "2026/9/14", "2026年9月8日", "2026-02-30",
    "08:00", "08:40", "8:05", "23:59", "24:00", "08：30", "数学", "二年级", "直播", "录播",
    "live", "recorded", *SCHOOLS, "洞头区鹿西乡小学;乐清市龙西乡小学",
    "洞头区实验小学、洞头区实验小学",
])
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
# What a workbook can hold: openpyxl refuses control characters in cells.
_XLSX_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=24)
HEADERS = [a for names in (*COLUMNS.values(), *HOLIDAY_COLUMNS.values()) for a in names]


ONCE = "once,,2026-09-16,15:00,15:40,科学,,,洞头区实验小学,,洞头区鹿西乡小学,,"
HOLIDAY = "holiday,,2026-09-14,,,,,,,,,,教师培训"
VALID = [r.split(",") for r in (DT_MON, WC_FRI, ONCE, HOLIDAY)]


def _mutated(cell: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A valid row with up to two cells replaced: reaches the later checks and success."""
    def apply(row: list[str], changes: list[tuple[int, Any]]) -> list[Any]:
        out: list[Any] = list(row)
        for at, value in changes:
            out[at % len(out)] = value
        return out

    return st.builds(apply, st.sampled_from(VALID),
                     st.lists(st.tuples(st.integers(0, 12), cell), max_size=2))


def _table(cell: st.SearchStrategy[Any], text: st.SearchStrategy[str] = ANY_TEXT,
           ) -> st.SearchStrategy[list[list[Any]]]:
    """Maybe a title line, a header (the real one or any names), then rows of ``cell``."""
    header = st.one_of(st.just(HEAD.split(",")),
                       st.lists(st.sampled_from(HEADERS) | text, min_size=1, max_size=14))
    rows = st.lists(_mutated(cell) | st.lists(cell, max_size=15), max_size=8)
    return st.builds(lambda head, body, title: ([[t] for t in title] + [head] + body),
                     header, rows, st.lists(text, max_size=1))


def _import(pilot: SessionFactory, data: bytes, name: str) -> None:
    """Import in a session that is always rolled back; check the one allowed failure."""
    with pilot() as session:
        before = session.scalar(select(func.count()).select_from(Lesson))
        try:
            result = import_timetable(session, data, name, semester=SEM, max_errors=10)
        except TimetableError as exc:
            # What the examples reached, shown by --hypothesis-show-statistics.
            event("refused: the file" if exc.errors[0].line == 0 else "refused: rows")
            assert 1 <= len(exc.errors) <= 10 and exc.total >= len(exc.errors)
            assert all(" / " in e.reason and e.line >= 0 for e in exc.errors)
            assert session.scalar(select(func.count()).select_from(Lesson)) == before
        else:
            event("imported" if result.lessons else "imported: no lessons")
            assert isinstance(result, ImportResult) and result.lessons >= 0
        finally:
            session.rollback()


def _csv(rows: Sequence[Sequence[Any]], encoding: str) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


@fuzz_settings
@given(rows=_table(NEAR_VALID | ANY_TEXT),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_any_csv_is_imported_or_refused_by_row(pilot: SessionFactory, rows: list[list[Any]],
                                               encoding: str) -> None:
    _import(pilot, _csv(rows, encoding), "fuzz.csv")


@fuzz_settings
@given(data=st.binary(max_size=2048), name=st.sampled_from(["fuzz.csv", "fuzz.xlsx"]))
def test_any_bytes_are_imported_or_refused(pilot: SessionFactory, data: bytes,
                                           name: str) -> None:
    _import(pilot, data, name)


XLSX_CELL = st.one_of(
    st.none(), NEAR_VALID, _XLSX_TEXT, st.integers(-10, 10**12), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(date(1900, 3, 1), date(2100, 1, 1)), st.times(),
    # Excel cells carry no time zone: a workbook's date-times are naive.
    st.datetimes(datetime(1900, 3, 1), datetime(2100, 1, 1)),  # noqa: DTZ001
)
MERGE = st.tuples(st.integers(1, 12), st.integers(1, 14), st.integers(0, 4), st.integers(0, 2))


@fuzz_settings
@given(rows=_table(XLSX_CELL, _XLSX_TEXT), merges=st.lists(MERGE, max_size=4),
       holidays=st.none() | _table(XLSX_CELL, _XLSX_TEXT),
       sheet=st.sampled_from(["课表", "Sheet", "lessons"]))
def test_any_workbook_is_imported_or_refused_by_row(
        pilot: SessionFactory, rows: list[list[Any]], merges: list[tuple[int, int, int, int]],
        holidays: list[list[Any]] | None, sheet: str) -> None:
    book = openpyxl.Workbook()
    lessons = book.active
    assert lessons is not None
    lessons.title = sheet
    for row in rows:
        lessons.append(row)
    for top, left, down, across in merges:
        lessons.merge_cells(f"{get_column_letter(left)}{top}:"
                            f"{get_column_letter(left + across)}{top + down}")
    if holidays is not None:
        extra = book.create_sheet("节假日")
        for row in holidays:
            extra.append(row)
    out = io.BytesIO()
    book.save(out)
    _import(pilot, out.getvalue(), "fuzz.xlsx")



def _workbook() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "课表"
    sheet.append(HEAD.split(","))
    sheet.append(DT_MON.split(","))
    sheet.append(DT_MON.replace("08:00,08:40", "09:00,09:40").split(","))
    sheet.merge_cells("I2:I3")
    book.create_sheet("节假日").append(["日期", "名称"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


WORKBOOK = _workbook()


@fuzz_settings
@given(patches=st.lists(st.tuples(st.integers(0, len(WORKBOOK) - 1), st.binary(min_size=1,
                                                                                max_size=8)),
                        min_size=1, max_size=6),
       cut=st.none() | st.integers(0, len(WORKBOOK)))
def test_a_damaged_workbook_is_refused_or_imported_never_crashes(pilot: SessionFactory,
                                                 patches: list[tuple[int, bytes]],
                                                 cut: int | None) -> None:
    data = bytearray(WORKBOOK)
    for at, chunk in patches:
        data[at:at + len(chunk)] = chunk
    _import(pilot, bytes(data[:cut]), "damaged.xlsx")
