"""Reading a timetable file (CSV or ``.xlsx``) into rows keyed by canonical column names.

Schools keep timetables in Excel, often with Chinese headers, and save CSV from it in
UTF-8 or GB18030; both header languages and both encodings are accepted.  In a
workbook the first sheet (or one named 课表/timetable) holds lessons; a sheet named
节假日/holidays, if any, lists dates without lessons.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fleet.timetable.errors import RowError, TimetableError

__all__ = ["COLUMNS", "HOLIDAY_COLUMNS", "RawRow", "read_table"]

# canonical name -> accepted headers (compared case-insensitively, spaces removed)
COLUMNS: dict[str, tuple[str, ...]] = {
    "kind": ("kind", "type", "类型"),
    "weekday": ("weekday", "星期", "周几"),
    "date": ("date", "日期"),
    "start": ("start", "开始", "开始时间", "上课时间"),
    "end": ("end", "结束", "结束时间", "下课时间"),
    "subject": ("subject", "学科", "科目"),
    "grade": ("grade", "年级"),
    "teacher": ("teacher", "教师", "主讲教师", "授课教师"),
    "main_school": ("main_school", "主讲学校"),
    "main_classroom": ("main_classroom", "主讲教室"),
    "receivers": ("receivers", "接收教室", "接收学校"),
    "mode": ("mode", "方式", "上课方式"),
    "note": ("note", "备注", "名称"),
    "seq": ("no", "#", "序号"),  # a row counter many school sheets have; not read
}
REQUIRED = ("start", "end", "subject", "main_school", "receivers")
HOLIDAY_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "日期"),
    "note": ("name", "note", "名称", "备注"),
}
_LESSON_SHEETS = {"课表", "timetable", "lessons"}
_HOLIDAY_SHEETS = {"节假日", "假期", "holidays", "holiday"}


@dataclass(frozen=True)
class RawRow:
    line: int
    values: dict[str, Any]  # canonical column -> cell value (str, or a typed Excel cell)
    headers: dict[str, str]  # canonical column -> the header as written in the file
    sheet: str = ""
    holiday_sheet: bool = False

    def error(self, column: str, reason: str) -> RowError:
        return RowError(self.line, self.headers.get(column, column), reason, self.sheet)


def _norm(header: Any) -> str:
    return "".join(str(header or "").split()).lower()


def _is_header(cells: Sequence[Any], columns: dict[str, tuple[str, ...]],
               required: Iterable[str]) -> bool:
    """A row naming two known columns, or all required ones, is the header.

    Rows above it are a sheet's title (2026学年第一学期同步课堂课表) and are skipped.
    """
    aliases = {_norm(a): canon for canon, names in columns.items() for a in names}
    found = {aliases[_norm(c)] for c in cells if _norm(c) in aliases}
    return len(found) >= 2 or set(required) <= found


def _map_header(cells: Sequence[Any], columns: dict[str, tuple[str, ...]], sheet: str,
                line: int, required: Iterable[str]) -> dict[int, tuple[str, str]]:
    aliases = {_norm(a): canon for canon, names in columns.items() for a in names}
    mapping: dict[int, tuple[str, str]] = {}
    errors: list[RowError] = []
    for index, cell in enumerate(cells):
        text = str(cell or "").strip()
        if not text:
            continue
        canon = aliases.get(_norm(text))
        if canon is None:
            errors.append(RowError(line, text, "未知列名 / unknown column", sheet))
        elif canon in {c for c, _ in mapping.values()}:
            errors.append(RowError(line, text, "列名重复 / duplicate column", sheet))
        else:
            mapping[index] = (canon, text)
    present = {c for c, _ in mapping.values()}
    for canon in required:
        if canon not in present:
            names = "/".join(columns[canon])
            errors.append(RowError(line, names, "缺少必需的列 / required column missing", sheet))
    if errors:
        raise TimetableError(errors)
    return mapping


def _rows(lines: Iterable[tuple[int, Sequence[Any]]], columns: dict[str, tuple[str, ...]],
          sheet: str, required: Iterable[str], holiday_sheet: bool = False) -> list[RawRow]:
    rows: list[RawRow] = []
    mapping: dict[int, tuple[str, str]] | None = None
    blank = True
    for line, cells in lines:
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        blank = False
        if mapping is None:
            if _is_header(cells, columns, required):
                mapping = _map_header(cells, columns, sheet, line, required)
            continue
        values = {canon: cells[i] for i, (canon, _) in mapping.items() if i < len(cells)}
        values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
        headers = {canon: text for canon, text in mapping.values()}
        rows.append(RawRow(line, values, headers, sheet, holiday_sheet))
    if mapping is None and not (holiday_sheet and blank):
        names = ", ".join(names[-1] for names in columns.values())
        raise TimetableError([RowError(0, "", f"找不到表头 / no header row ({names})", sheet)])
    return rows


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TimetableError([RowError(0, "", "无法识别的文本编码 / not UTF-8 or GB18030 text")])


def _read_csv(data: bytes) -> list[RawRow]:
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    numbered: list[tuple[int, Sequence[Any]]] = []
    start = 1
    for cells in reader:
        numbered.append((start, cells))
        start = reader.line_num + 1
    return _rows(numbered, COLUMNS, "", REQUIRED)


def _read_xlsx(data: bytes) -> list[RawRow]:
    import openpyxl  # deferred: only a workbook upload needs it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        reason = f"不是有效的 xlsx 文件 / not a valid .xlsx: {exc}"
        raise TimetableError([RowError(0, "", reason)]) from None
    try:
        names = list(book.sheetnames)
        lesson_sheet = next((n for n in names if _norm(n) in _LESSON_SHEETS), names[0])
        rows: list[RawRow] = []
        for name in names:
            if _norm(name) in _HOLIDAY_SHEETS:
                numbered = enumerate(book[name].iter_rows(values_only=True), start=1)
                rows += _rows(numbered, HOLIDAY_COLUMNS, name, ("date",), holiday_sheet=True)
        numbered = enumerate(book[lesson_sheet].iter_rows(values_only=True), start=1)
        return _rows(numbered, COLUMNS, lesson_sheet, REQUIRED) + rows
    finally:
        book.close()


def read_table(data: bytes, filename: str) -> list[RawRow]:
    """Rows of a ``.csv`` or ``.xlsx`` file; raises TimetableError on an unusable file."""
    suffix = filename.lower().rpartition(".")[2]
    if suffix == "csv":
        return _read_csv(data)
    if suffix == "xlsx":
        return _read_xlsx(data)
    raise TimetableError([RowError(0, "", f"仅支持 .csv 和 .xlsx / only .csv and .xlsx, "
                                          f"not {filename!r}")])
