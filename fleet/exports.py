"""CSV files people open in Excel or WPS: the one writer every export of the fleet uses.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or a
carriage return before one) as a formula, so a school named ``=HYPERLINK(...)`` would
become a link or a command on the technician's PC.  As OWASP's CSV injection cheat sheet
recommends, such text cells get a leading single quote and every text cell is quoted.

Numbers the fleet itself formats are written unquoted and untouched, so a negative
figure stays a number: it comes from an ``int`` or ``float``, never from anyone's input,
and a spreadsheet reads ``-5.0`` as a value, not a formula.  Text that merely looks like
a number (a name ``-2``) is neutralised like any other text: its author is not the fleet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date

__all__ = ["FORMULA_STARTS", "Cell", "csv_document", "neutralise"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | date | None


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Cell) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    return neutralise(value.isoformat() if isinstance(value, date) else value)


def csv_document(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """UTF-8 with a BOM, so that Excel shows Chinese text; text quoted, numbers bare."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([_cell(title) for title in header])
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
