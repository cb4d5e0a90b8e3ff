"""An import's result as text for a terminal: the counts, then each change by date and
classroom (what ``import-timetable --dry-run`` prints before anyone applies it)."""

from __future__ import annotations

from fleet.timetable.importer import ImportResult

__all__ = ["CHANGE_NAMES", "describe"]

CHANGE_NAMES = {"added": "新增 added", "changed": "变更 changed", "cancelled": "取消 cancelled",
                "conflict": "冲突 conflict"}


def describe(result: ImportResult) -> str:
    head = "预览（未写入）/ preview, nothing written" if result.dry_run else "已导入 / imported"
    lines = [
        f"{head}: {result.schedule} · {result.semester} · {result.source}",
        f"课程 lessons {result.lessons}: 新增 added {result.created}, 变更 changed "
        f"{result.updated}, 不变 unchanged {result.unchanged}, 取消 cancelled {result.removed}, "
        f"冲突 conflicts {result.conflicts}; 日历 calendar days {result.holidays}",
    ]
    for c in result.changes:
        detail = f"  {c.detail}" if c.detail else ""
        lines.append(f"{c.day} {c.classroom} {c.starts}-{c.ends} {c.subject} "
                     f"{CHANGE_NAMES[c.change]}{detail}")
    shown = result.created + result.updated + result.removed + result.conflicts
    if shown > len(result.changes):
        lines.append(f"……仅列出前 {len(result.changes)} 项 / only the first "
                     f"{len(result.changes)} are listed")
    return "\n".join(lines)
