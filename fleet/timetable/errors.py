"""What a refused timetable file says: the first bad rows, with where and why, and how many.

Every reason is built from a ``Text``: a Chinese sentence and an English one, each
complete on its own, joined as ``中文 / English``.  Keeping both halves whole is what
stops a value landing between them ("与第 2 行 / line 2时间冲突").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ERRORS", "ErrorLog", "RowError", "Text", "TimetableError"]

# How many errors a refusal lists; the rest are counted.  A file of 100 000 bad rows
# needs fixing at its source, and a 50 MB answer helps nobody do that.
MAX_ERRORS = 100


@dataclass(frozen=True)
class Text:
    """One message in both languages; ``str.format`` fields are filled into each half."""

    zh: str
    en: str

    def __call__(self, **values: Any) -> str:
        return f"{self.zh.format(**values)} / {self.en.format(**values)}"

    def __add__(self, note: Text) -> Text:
        """This message with ``note`` appended to each half."""
        return Text(self.zh + note.zh, self.en + note.en)

    @classmethod
    def of(cls, message: str) -> Text:
        """A ready ``中文 / English`` message from elsewhere (its values already filled in)."""
        zh, _, en = message.partition(" / ")
        return cls(_literal(zh), _literal(en or zh))


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True, order=True)
class RowError:
    """One problem: ``line`` is the row as a spreadsheet shows it (0: the whole file)."""

    line: int
    column: str
    reason: str  # 简体中文 / English
    sheet: str = ""

    def __str__(self) -> str:
        where = f"{self.sheet}!" if self.sheet else ""
        column = f" [{self.column}]" if self.column else ""
        return f"{where}第 {self.line} 行 / line {self.line}{column}: {self.reason}"


class ErrorLog:
    """The first ``limit`` errors in file order, and how many there were in all.

    Memory stays bounded however many rows are bad: the kept list is trimmed to the
    ``limit`` smallest (sheet order, line, column) whenever it doubles.
    """

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.limit = max(1, limit)
        self.total = 0
        self._kept: list[RowError] = []

    def __bool__(self) -> bool:
        return self.total > 0

    def append(self, error: RowError) -> None:
        self.total += 1
        self._kept.append(error)
        if len(self._kept) >= 2 * self.limit:
            self._kept = sorted(self._kept)[: self.limit]

    def extend(self, refused: TimetableError) -> None:
        for error in refused.errors:
            self.append(error)
        self.total += refused.total - len(refused.errors)

    def first(self) -> list[RowError]:
        return sorted(self._kept)[: self.limit]


NOT_IMPORTED = Text("课表未导入，共 {total} 处错误", "timetable not imported, {total} error(s)")
ONLY_FIRST = Text("仅列出前 {shown} 处", "only the first {shown} are listed")


class TimetableError(ValueError):
    """The file was refused as a whole; nothing of it was applied."""

    def __init__(self, errors: list[RowError] | ErrorLog) -> None:
        log = errors if isinstance(errors, ErrorLog) else _log_of(errors)
        self.errors = log.first()
        self.total = log.total
        lines = [NOT_IMPORTED(total=self.total)]
        if self.total > len(self.errors):
            lines.append(ONLY_FIRST(shown=len(self.errors)))
        lines += (str(e) for e in self.errors)
        super().__init__("\n".join(lines))


def _log_of(errors: list[RowError]) -> ErrorLog:
    log = ErrorLog(max(1, len(errors)))
    for error in errors:
        log.append(error)
    return log
