"""Alert texts: 简体中文 first, English second, with the lesson at stake.

"竹里乡小学 同步课堂教室：二年级数学 10:00 与 某某小学同步：摄像头未连接 / ...: Grade 2
Maths at 10:00 with 某某小学: camera missing", and under it what to do.  School names
stay as written; common grades and subjects are translated, anything else is kept in
Chinese rather than guessed; internal names (``target:peer``) are said in words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from fleet.alerts.advice import advice, target_label
from fleet.alerts.context import LessonContext
from fleet.alerts.signal import rule_info

__all__ = ["KINDS", "AlertLine", "Message", "grade_en", "lesson_phrase", "render", "subject_en",
           "summary"]

KINDS: Final[dict[str, tuple[str, str]]] = {
    "firing": ("告警", "ALERT"),
    "reminder": ("提醒：仍未处理", "REMINDER: still unacknowledged"),
    "escalation": ("升级至县电教", "ESCALATED to the county"),
    "resolved": ("已恢复", "RESOLVED"),
    # Resolved by a person while the device still reports the fault: not "recovered".
    "closed": ("已人工关闭，设备仍报告故障", "CLOSED by hand, the device still reports it"),
    "acknowledged": ("已受理", "ACKNOWLEDGED"),
}

_SUBJECTS: Final = {
    "语文": "Chinese", "数学": "Maths", "英语": "English", "科学": "Science",
    "物理": "Physics", "化学": "Chemistry", "生物": "Biology", "历史": "History",
    "地理": "Geography", "道德与法治": "Morality and Law", "音乐": "Music", "美术": "Art",
    "体育": "PE", "信息技术": "IT", "书法": "Calligraphy", "心理健康": "Mental Health",
}
_NUMBERS: Final = "一二三四五六七八九"
_JUNIOR: Final = {"初一": 7, "初二": 8, "初三": 9, "七年级": 7, "八年级": 8, "九年级": 9}


def subject_en(subject: str) -> str:
    return _SUBJECTS.get(subject, subject)


def grade_en(grade: str) -> str:
    if grade in _JUNIOR:
        return f"Grade {_JUNIOR[grade]}"
    if len(grade) == 3 and grade.endswith("年级") and grade[0] in _NUMBERS:
        return f"Grade {_NUMBERS.index(grade[0]) + 1}"
    return grade


def lesson_phrase(ctx: LessonContext) -> tuple[str, str]:
    with_zh = "、".join(ctx.partners)
    zh = f"{ctx.grade}{ctx.subject} {ctx.local_start}"
    en = f"{grade_en(ctx.grade)} {subject_en(ctx.subject)} at {ctx.local_start}".strip()
    if with_zh:
        zh += f" 与 {with_zh}同步"
        en += f" with {', '.join(ctx.partners)}"
    if ctx.in_progress:
        zh += "（上课中）"
        en += " (in progress)"
    return zh, en


def _named(text: str, name: str, label: str) -> str:
    """``text`` with the target's configured name (a word of its own) in words."""
    return re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", label, text)


def summary(
    rule: str, entity: str, ctx: LessonContext | None, detail: tuple[str, str] = ("", ""),
    place: tuple[str, str] = ("", ""),
) -> tuple[str, str]:
    """One line per alert, as stored on the ticket and shown in lists: where (``place``,
    "学校 教室"), what, and the lesson at stake; ``detail`` is the agent's own message."""
    info = rule_info(rule)
    zh, en = info.title_zh, info.title_en
    detail_zh, detail_en = detail
    kind, _, name = entity.partition(":")
    if kind == "target" and name:  # a network target: said in words, never "target:peer"
        label_zh, label_en = target_label(name)
        zh, en = f"{zh}（{label_zh}）", f"{en} ({label_en})"
        detail_zh, detail_en = _named(detail_zh, name, label_zh), _named(detail_en, name, label_en)
    elif name:  # "camera:usb-1": which one; a bare kind says nothing new
        zh, en = f"{zh}（{name}）", f"{en} ({name})"
    # The agent's own words usually restate the title ("Student camera：摄像头未连接（…）"):
    # then they replace it rather than follow it.
    if detail_zh:
        zh = detail_zh if info.title_zh in detail_zh else f"{zh}：{detail_zh}"
    if detail_en:
        en = detail_en if info.title_en.lower() in detail_en.lower() else f"{en}: {detail_en}"
    if ctx is not None:
        lesson_zh, lesson_en = lesson_phrase(ctx)
        zh, en = f"{lesson_zh}：{zh}", f"{lesson_en}: {en}"
    if place[0]:
        zh, en = f"{place[0]}：{zh}", f"{place[1] or place[0]}: {en}"
    return zh, en


@dataclass(frozen=True)
class AlertLine:
    """What a message says about one alert."""

    alert_id: int
    device_id: str
    summary_zh: str
    summary_en: str
    since: datetime
    rule: str = ""
    ack_by: str | None = None
    ack_comment: str | None = None
    reopen_count: int = 0


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def _line(item: AlertLine, tz: ZoneInfo, zh: bool, where: str) -> str:
    since = item.since.astimezone(tz).strftime("%m-%d %H:%M")
    text = item.summary_zh if zh else item.summary_en
    # The message's header names the place already.
    text = text.removeprefix(f"{where}：" if zh else f"{where}: ")
    out = f"- #{item.alert_id} {text}"
    device = item.device_id
    out += f"（设备 {device}，自 {since}" if zh else f" (device {device}, since {since}"
    if item.reopen_count:
        out += f"，第 {item.reopen_count} 次复发" if zh else f", reopened {item.reopen_count}x"
    out += "）" if zh else ")"
    todo_zh, todo_en = advice(item.rule)
    if todo_zh:
        out += f"\n  建议：{todo_zh}" if zh else f"\n  advice: {todo_en}"
    if item.ack_by:
        comment = item.ack_comment or ""
        out += f"\n  {item.ack_by} 已受理：{comment}" if zh else (
            f"\n  acknowledged by {item.ack_by}: {comment}"
        )
    return out


def _headline(summary_text: str, limit: int = 60) -> str:
    return summary_text if len(summary_text) <= limit else summary_text[: limit - 1] + "…"


def render(
    kind: str, where: str, items: Sequence[AlertLine], timezone: str, link: str = ""
) -> Message:
    """One message for the alerts of one classroom (``where`` = "学校 教室")."""
    kind_zh, kind_en = KINDS[kind]
    tz = ZoneInfo(timezone)
    if len(items) == 1:
        # The subject is the headline; the agent's own explanation stays in the body.
        head_zh = _headline(items[0].summary_zh.removeprefix(f"{where}："))
        head_en = _headline(items[0].summary_en.removeprefix(f"{where}: "))
    else:
        head_zh, head_en = f"{len(items)} 项告警", f"{len(items)} alerts"
    subject = f"【{kind_zh}】{where}：{head_zh} / [{kind_en}] {where}: {head_en}"
    lines = [f"【{kind_zh}】{where}", *(_line(i, tz, True, where) for i in items), ""]
    lines += [f"[{kind_en}] {where}", *(_line(i, tz, False, where) for i in items)]
    if link:
        lines += ["", f"详情 / details: {link}"]
    return Message(subject, "\n".join(lines))
