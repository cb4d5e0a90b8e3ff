"""The semester timetable of synchronous lessons: import (CSV/XLSX) and iCalendar export."""

from __future__ import annotations

from fleet.timetable.errors import RowError, TimetableError
from fleet.timetable.ics import classroom_calendar, person_calendar
from fleet.timetable.importer import Change, ImportResult, Semester, import_timetable, source_of

__all__ = [
    "Change",
    "ImportResult",
    "RowError",
    "Semester",
    "TimetableError",
    "classroom_calendar",
    "import_timetable",
    "person_calendar",
    "source_of",
]
