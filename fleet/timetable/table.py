"""Reading a timetable file (CSV or ``.xlsx``) into rows keyed by canonical column names.

Schools keep timetables in Excel, often with Chinese headers, and save CSV from it in
UTF-8 or GB18030; both header languages and both encodings are accepted.  In a
workbook the first sheet (or one named 课表/timetable) holds lessons; a sheet named
节假日/holidays, if any, lists dates without lessons.
"""

from __future__ import annotations

import codecs
import csv
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO
from xml.etree import ElementTree

from fleet.timetable import messages as msg
from fleet.timetable.errors import RowError, Text, TimetableError

if TYPE_CHECKING:
    from openpyxl.worksheet.cell_range import CellRange

__all__ = ["COLUMNS", "HOLIDAY_COLUMNS", "MAX_UNPACKED", "RawRow", "read_table"]

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
_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_MERGE_TAG, _ROW_TAG, _SHEET_DATA_TAG = (_MAIN_NS + t for t in ("mergeCell", "row", "sheetData"))
_CHUNK = 1 << 16
# What reading a damaged workbook raises from zipfile, zlib, the XML parser and openpyxl.
# (RuntimeError: zipfile's "encrypted" and NotImplementedError "zip file version".)
_DAMAGED = (zipfile.BadZipFile, zlib.error, struct.error, ElementTree.ParseError, EOFError,
            LookupError, ValueError, TypeError, AttributeError, OSError, RuntimeError)
_NOT_MERGED: dict[int, str] = {}
# A timetable has 14 columns: a merged range reaching further fills only this many, so a
# sheet-wide merge (A1:XFD9) cannot cost every row 16 384 cells.
_WIDEST = 64
# An .xlsx is a zip of XML: a few MiB can unpack to gigabytes.  A county's whole-year
# timetable unpacks to well under this; zipfile stops each member at its declared size.
MAX_UNPACKED = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawRow:
    line: int
    values: dict[str, Any]  # canonical column -> cell value (str, or a typed Excel cell)
    headers: dict[str, str]  # canonical column -> the header as written in the file
    sheet: str = ""
    holiday_sheet: bool = False
    merged: dict[str, str] = field(default_factory=dict)  # column -> its merged range

    def error(self, column: str, text: Text, **values: Any) -> RowError:
        if column in self.merged:
            text, values = text + msg.MERGED_NOTE, values | {"merged_cells": self.merged[column]}
        return RowError(self.line, self.headers.get(column, column), text(**values), self.sheet)


Cells = Sequence[Any]
# (spreadsheet line, cells, column index -> the merged range the cell belongs to)
Line = tuple[int, Cells, dict[int, str]]


def _norm(header: Any) -> str:
    return "".join(str(header or "").split()).lower()


def _is_header(cells: Cells, aliases: dict[str, str], required: Iterable[str]) -> bool:
    """A row naming two known columns, or all required ones, is the header.

    Rows above it are a sheet's title (2026学年第一学期同步课堂课表) and are skipped.
    """
    found = {aliases[_norm(c)] for c in cells if _norm(c) in aliases}
    return len(found) >= 2 or set(required) <= found


def _map_header(line: Line, columns: dict[str, tuple[str, ...]], aliases: dict[str, str],
                sheet: str, required: Iterable[str]) -> dict[int, tuple[str, str]]:
    number, cells, merged = line
    mapping: dict[int, tuple[str, str]] = {}
    errors: list[RowError] = []

    def refuse(index: int, column: str, text: Text) -> None:
        values: dict[str, Any] = {}
        if index in merged:
            text, values = text + msg.MERGED_NOTE, {"merged_cells": merged[index]}
        errors.append(RowError(number, column, text(**values), sheet))

    for index, cell in enumerate(cells):
        text = str(cell or "").strip()
        if not text:
            continue
        canon = aliases.get(_norm(text))
        if canon is None:
            refuse(index, text, msg.UNKNOWN_COLUMN)
        elif canon in {c for c, _ in mapping.values()}:
            refuse(index, text, msg.DUPLICATE_COLUMN)
        else:
            mapping[index] = (canon, text)
    present = {c for c, _ in mapping.values()}
    for canon in required:
        if canon not in present:
            refuse(-1, "/".join(columns[canon]), msg.MISSING_COLUMN)
    if errors:
        raise TimetableError(errors)
    return mapping


def _rows(lines: Iterable[Line], columns: dict[str, tuple[str, ...]], sheet: str,
          required: Iterable[str], holiday_sheet: bool = False) -> Iterator[RawRow]:
    aliases = {_norm(a): canon for canon, names in columns.items() for a in names}
    mapping: dict[int, tuple[str, str]] | None = None
    headers: dict[str, str] = {}
    blank = True
    for line in lines:
        number, cells, merged = line
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        blank = False
        if mapping is None:
            if _is_header(cells, aliases, required):
                mapping = _map_header(line, columns, aliases, sheet, required)
                headers = {canon: text for canon, text in mapping.values()}
            continue
        values = {canon: cells[i] for i, (canon, _) in mapping.items() if i < len(cells)}
        values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
        where = {mapping[i][0]: ref for i, ref in merged.items() if i in mapping}
        yield RawRow(number, values, headers, sheet, holiday_sheet, where)
    if mapping is None and not (holiday_sheet and blank):
        names = ", ".join(names[-1] for names in columns.values())
        raise TimetableError([RowError(0, "", msg.NO_HEADER(names=names), sheet)])


def _encoding(stream: BinaryIO) -> str:
    """UTF-8 (with or without BOM) or GB18030, checked over the whole file in chunks."""
    for encoding in ("utf-8-sig", "gb18030"):
        stream.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            while chunk := stream.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        stream.seek(0)
        return encoding
    raise TimetableError([RowError(0, "", msg.BAD_ENCODING())])


def _read_csv(stream: BinaryIO) -> Iterator[RawRow]:
    text = io.TextIOWrapper(stream, encoding=_encoding(stream), newline="")
    try:
        reader = csv.reader(text)

        def numbered() -> Iterator[Line]:
            start = 1
            for cells in reader:
                yield start, cells, _NOT_MERGED
                start = reader.line_num + 1

        yield from _rows(numbered(), COLUMNS, "", REQUIRED)
    except csv.Error as exc:
        raise TimetableError([RowError(reader.line_num, "", msg.BAD_CSV(detail=exc))]) from None
    finally:
        text.detach()  # the caller owns the stream


@contextmanager
def _workbook_reading() -> Iterator[None]:
    """Whatever a damaged workbook makes the zip, zlib, XML or openpyxl code raise, it
    is one refusal of the file.  Only their calls run inside, so a fault of ours is not
    mistaken for a bad file."""
    try:
        yield
    except _DAMAGED as exc:
        raise TimetableError([RowError(0, "", msg.NOT_XLSX(detail=exc))]) from None


def _merged_ranges(book: Any, sheet: Any) -> list[CellRange]:
    """The sheet's merged ranges, which openpyxl's read-only mode does not expose.

    They sit after the cells in the sheet's XML, which is read once more as a stream,
    each row dropped as soon as it ends, so memory stays flat.
    """
    from openpyxl.worksheet.cell_range import CellRange  # deferred, as openpyxl itself

    refs: list[str] = []
    data: ElementTree.Element | None = None
    # _archive and _worksheet_path: the read-only sheet's own zip member, no public name
    with _workbook_reading(), book._archive.open(sheet._worksheet_path) as source:
        for event, element in ElementTree.iterparse(source, events=("start", "end")):
            if event == "start":
                if element.tag == _SHEET_DATA_TAG:
                    data = element
            elif element.tag == _ROW_TAG and data is not None:
                data.clear()
            elif element.tag == _MERGE_TAG and element.get("ref"):
                refs.append(element.get("ref", ""))
        ranges = [CellRange(ref) for ref in refs]
    return sorted(ranges, key=lambda r: (r.min_row, r.min_col))


def _sheet_rows(book: Any, name: str) -> Iterator[tuple[int, list[Any]]]:
    with _workbook_reading():
        sheet = book[name]
        sheet.reset_dimensions()  # a wrong <dimension> would otherwise cut columns off
        rows = sheet.iter_rows(values_only=True)
    number = 0
    while True:
        with _workbook_reading():
            row = next(rows, None)
        if row is None:
            return
        number += 1
        yield number, list(row)


def _sheet_lines(book: Any, name: str) -> Iterator[Line]:
    """Rows of one sheet, each cell of a merged range given the range's top-left value."""
    with _workbook_reading():
        sheet = book[name]
    pending = _merged_ranges(book, sheet)
    pending.reverse()  # popped from the end in row order
    active: dict[str, tuple[CellRange, Any]] = {}  # coord -> range, its top-left value
    for number, cells in _sheet_rows(book, name):
        while pending and pending[-1].min_row <= number:
            cr = pending.pop()
            if cr.max_row >= number:
                on_top = cr.min_row == number and cr.min_col <= len(cells)
                active[cr.coord] = (cr, cells[cr.min_col - 1] if on_top else None)
        merged: dict[int, str] = {}
        for coord, (cr, value) in list(active.items()):
            if cr.max_row < number:
                del active[coord]
                continue
            widest = min(cr.max_col, _WIDEST)
            cells += [None] * (widest - len(cells))
            for col in range(cr.min_col - 1, widest):
                cells[col] = value
                merged[col] = coord
        yield number, cells, merged


def _read_xlsx(stream: BinaryIO) -> Iterator[RawRow]:
    import openpyxl  # deferred: only a workbook upload needs it

    with _workbook_reading():
        unpacked = sum(member.file_size for member in zipfile.ZipFile(stream).infolist())
    if unpacked > MAX_UNPACKED:
        raise TimetableError([RowError(0, "", msg.UNPACKED_TOO_LARGE(limit=MAX_UNPACKED))])
    stream.seek(0)
    with _workbook_reading():
        book = openpyxl.load_workbook(stream, read_only=True, data_only=True)
        names = list(book.sheetnames)
    try:
        if not names:
            raise TimetableError([RowError(0, "", msg.NO_HEADER(names="-"))])
        lesson_sheet = next((n for n in names if _norm(n) in _LESSON_SHEETS), names[0])
        yield from _rows(_sheet_lines(book, lesson_sheet), COLUMNS, lesson_sheet, REQUIRED)
        for name in names:
            if _norm(name) in _HOLIDAY_SHEETS:
                yield from _rows(_sheet_lines(book, name), HOLIDAY_COLUMNS, name, ("date",),
                                 holiday_sheet=True)
    finally:
        with _workbook_reading():
            book.close()


def read_table(source: bytes | BinaryIO, filename: str) -> Iterator[RawRow]:
    """Rows of a ``.csv`` or ``.xlsx`` file, read as a stream.

    ``source`` is the content or a seekable binary file; raises TimetableError on an
    unusable file (possibly after some rows were yielded: callers collect, then apply).
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    suffix = filename.lower().rpartition(".")[2]
    if suffix == "csv":
        return _read_csv(stream)
    if suffix == "xlsx":
        return _read_xlsx(stream)
    raise TimetableError([RowError(0, "", msg.ONLY_CSV_XLSX(name=filename))])
