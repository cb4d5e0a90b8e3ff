"""Is a lesson ready?  The state of each end's latest check, and of the lesson as a whole.

An end is one enabled device of a classroom in the lesson; the lesson is as ready as its
worst end.  ``now`` may be any instant (a report asks "as of the start"): checks sent
after it are ignored, and answers that came after it count as still awaited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.contract import format_ts
from fleet.checks.plan import End, load_ends
from fleet.db.models import CheckRun, Lesson

__all__ = [
    "EndReadiness",
    "Readiness",
    "ReadinessState",
    "lesson_readiness",
    "lessons_readiness",
]


class ReadinessState(StrEnum):
    READY = "ready"  # every end passed
    WARN = "warn"  # every end answered, some with warnings
    NOT_READY = "not_ready"  # an end failed or did not answer
    CHECKING = "checking"  # a check is out, waiting for the answer
    PENDING = "pending"  # not checked yet (the lead time has not come)
    UNKNOWN = "unknown"  # cannot be checked: no device, cancelled, or never checked


LABELS: dict[ReadinessState, tuple[str, str]] = {
    ReadinessState.READY: ("就绪", "ready"),
    ReadinessState.WARN: ("有警告", "warning"),
    ReadinessState.NOT_READY: ("未就绪", "not ready"),
    ReadinessState.CHECKING: ("检查中", "checking"),
    ReadinessState.PENDING: ("待检查", "pending"),
    ReadinessState.UNKNOWN: ("未知", "unknown"),
}

# The lesson takes the state of its worst end, in this order.
_SEVERITY = (
    ReadinessState.NOT_READY,
    ReadinessState.UNKNOWN,
    ReadinessState.CHECKING,
    ReadinessState.PENDING,
    ReadinessState.WARN,
    ReadinessState.READY,
)

_BY_VERDICT = {
    "pass": ReadinessState.READY,
    "warn": ReadinessState.WARN,
    "fail": ReadinessState.NOT_READY,
    "no_answer": ReadinessState.NOT_READY,
}


def _ts(when: datetime | None) -> str | None:
    return format_ts(when) if when else None


@dataclass(frozen=True)
class EndReadiness:
    classroom_id: int
    classroom: str
    school: str
    role: str  # main / receiver
    device_id: str | None  # None: the classroom has no enabled device
    state: ReadinessState
    verdict: str | None = None  # of the latest answered check
    phase: str | None = None  # of the latest check
    request_id: str | None = None
    requested_at: datetime | None = None
    answered_at: datetime | None = None
    # Of the latest answered check (while a recheck is out, what the last one found).
    findings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        zh, en = LABELS[self.state]
        return {
            "classroom_id": self.classroom_id,
            "classroom": self.classroom,
            "school": self.school,
            "role": self.role,
            "device_id": self.device_id,
            "state": self.state.value,
            "label_zh": zh,
            "label_en": en,
            "verdict": self.verdict,
            "phase": self.phase,
            "request_id": self.request_id,
            "requested_at": _ts(self.requested_at),
            "answered_at": _ts(self.answered_at),
            "findings": self.findings,
        }


@dataclass(frozen=True)
class Readiness:
    lesson_id: int
    state: ReadinessState
    ends: list[EndReadiness]

    def to_json(self) -> dict[str, Any]:
        zh, en = LABELS[self.state]
        return {
            "lesson_id": self.lesson_id,
            "state": self.state.value,
            "label_zh": zh,
            "label_en": en,
            "ends": [end.to_json() for end in self.ends],
        }


def _end_states(
    end: End, runs: dict[str, list[CheckRun]], now: datetime
) -> list[EndReadiness]:
    base: dict[str, Any] = {
        "classroom_id": end.classroom.id,
        "classroom": end.classroom.name,
        "school": end.classroom.school.name,
        "role": end.role,
    }
    devices = end.devices
    if not devices:
        return [EndReadiness(device_id=None, state=ReadinessState.UNKNOWN, **base)]
    out = []
    for device in devices:
        history = [r for r in runs.get(device.id, []) if r.requested_at <= now]
        if not history:
            state = ReadinessState.PENDING if now < end.lesson.starts_at else ReadinessState.UNKNOWN
            out.append(EndReadiness(device_id=device.id, state=state, **base))
            continue
        latest = history[-1]
        answered = [
            r for r in history
            if r.verdict is not None and (r.answered_at is None or r.answered_at <= now)
        ]
        last = answered[-1] if answered else None
        state = (
            _BY_VERDICT.get(latest.verdict or "", ReadinessState.UNKNOWN)
            if last is latest
            else ReadinessState.CHECKING
        )
        out.append(
            EndReadiness(
                device_id=device.id,
                state=state,
                verdict=last.verdict if last else None,
                phase=latest.phase,
                request_id=latest.request_id,
                requested_at=latest.requested_at,
                answered_at=last.answered_at if last else None,
                findings=list(last.findings) if last else [],
                **base,
            )
        )
    return out


def lessons_readiness(
    session: Session, lessons: Sequence[Lesson], now: datetime
) -> dict[int, Readiness]:
    """Readiness of many lessons (a day's timetable) in a handful of queries."""
    runs: dict[int, dict[str, list[CheckRun]]] = defaultdict(lambda: defaultdict(list))
    for run in session.scalars(
        select(CheckRun)
        .where(CheckRun.lesson_id.in_([lesson.id for lesson in lessons]))
        .order_by(CheckRun.requested_at, CheckRun.id)
    ):
        runs[run.lesson_id or 0][run.device_id].append(run)
    out: dict[int, Readiness] = {}
    ends_of = load_ends(session, lessons)
    for lesson in lessons:
        ends = [e for end in ends_of[lesson.id] for e in _end_states(end, runs[lesson.id], now)]
        states = {e.state for e in ends}
        if not ends or lesson.cancelled:
            state = ReadinessState.UNKNOWN
        else:
            state = next(s for s in _SEVERITY if s in states)
        out[lesson.id] = Readiness(lesson.id, state, ends)
    return out


def lesson_readiness(session: Session, lesson: Lesson, now: datetime) -> Readiness:
    return lessons_readiness(session, [lesson], now)[lesson.id]
