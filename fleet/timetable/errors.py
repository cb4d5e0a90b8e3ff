"""What a refused timetable file says: every bad row, with where and why."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RowError", "TimetableError"]


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
        return f"{where}第 {self.line} 行 line {self.line}{column}: {self.reason}"


class TimetableError(ValueError):
    """The file was refused as a whole; nothing of it was applied."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = sorted(errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(f"课表未导入，共 {len(errors)} 处错误 / timetable not imported, "
                         f"{len(errors)} error(s):\n{lines}")
