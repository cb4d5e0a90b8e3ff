"""Which classrooms and devices a lesson's check covers, and what each end is asked.

A live lesson has two kinds of end: the main (town) classroom sends the lesson up and
receives the rural class back; each receiving classroom does the opposite.  A recorded
lesson (录播) only plays a recording at the receivers: only they are checked, with no
uplink.  Each end is told the other end's address, so its network probe measures the
path the lesson takes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from agent.contract import CAP_LESSON_WINDOW, format_ts
from fleet.actions.safety import busy_lesson
from fleet.checks.config import CheckConfig
from fleet.db.models import (
    Classroom,
    Device,
    DeviceState,
    Lesson,
    LessonMode,
    LessonReceiver,
)

__all__ = ["CheckPlanner", "End", "load_ends"]


@dataclass(frozen=True)
class End:
    lesson: Lesson
    classroom: Classroom
    role: Literal["main", "receiver"]

    @property
    def devices(self) -> list[Device]:
        return sorted((d for d in self.classroom.devices if d.enabled), key=lambda d: d.id)


def load_ends(session: Session, lessons: Sequence[Lesson]) -> dict[int, list[End]]:
    """Every lesson's ends, with classrooms, schools and devices, in three queries."""
    ids = [lesson.id for lesson in lessons]
    receivers: dict[int, list[int]] = defaultdict(list)
    for lesson_id, classroom_id in session.execute(
        select(LessonReceiver.lesson_id, LessonReceiver.classroom_id)
        .where(LessonReceiver.lesson_id.in_(ids))
        .order_by(LessonReceiver.classroom_id)
    ):
        receivers[lesson_id].append(classroom_id)
    wanted = {lesson.main_classroom_id for lesson in lessons}
    wanted.update(cid for cids in receivers.values() for cid in cids)
    classrooms = {
        c.id: c
        for c in session.scalars(
            select(Classroom)
            .where(Classroom.id.in_(wanted))
            .options(selectinload(Classroom.devices), joinedload(Classroom.school))
        )
    }
    ends: dict[int, list[End]] = {}
    for lesson in lessons:
        found = [End(lesson, classrooms[cid], "receiver") for cid in receivers[lesson.id]]
        if lesson.mode == LessonMode.LIVE:
            found.insert(0, End(lesson, classrooms[lesson.main_classroom_id], "main"))
        ends[lesson.id] = found
    return ends


def _peer_targets(devices: Iterable[Device]) -> dict[str, str]:
    """The other end's addresses as network targets: "peer", or "peer-<id>" for several."""
    reachable = [d for d in devices if d.address]
    if len(reachable) == 1:
        return {"peer": reachable[0].address}
    return {f"peer-{d.id}": d.address for d in reachable}


class CheckPlanner:
    def __init__(self, config: CheckConfig) -> None:
        self.config = config

    def args(self, end: End, ends: Sequence[End]) -> dict[str, Any]:
        """The run-check args for every device of ``end`` among its lesson's ``ends``."""
        cfg = self.config
        others = [d for other in ends if other.role != end.role for d in other.devices]
        args: dict[str, Any] = {
            "bandwidth_url": cfg.bandwidth_url or None,
            "lesson_id": end.lesson.id,
        }
        if end.lesson.mode == LessonMode.RECORDED:
            return args | {"targets": {}, "uplink": False, "need_up_mbps": None,
                           "need_down_mbps": cfg.receiver_down_mbps}
        if end.role == "main":
            receiving = sum(1 for other in ends if other.role == "receiver")
            up, down = cfg.main_up_mbps, cfg.main_down_mbps * max(receiving, 1)
        else:
            up, down = cfg.receiver_up_mbps, cfg.receiver_down_mbps
        return args | {"targets": _peer_targets(others), "uplink": True,
                       "need_up_mbps": up, "need_down_mbps": down}

    @staticmethod
    def window(session: Session, device_id: str, lesson: Lesson) -> dict[str, Any]:
        """The lesson's times, for an agent whose birth says it takes them: it then keeps
        its checks and sampling passive from shortly before the lesson to its end."""
        with session.no_autoflush:  # a read: the checks being recorded stay unflushed
            state = session.get(DeviceState, device_id)
        agent = (state.inventory or {}).get("agent") if state is not None else None
        capabilities = agent.get("capabilities") if isinstance(agent, dict) else None
        if not isinstance(capabilities, list) or CAP_LESSON_WINDOW not in capabilities:
            return {}
        return {"lesson_starts_at": format_ts(lesson.starts_at),
                "lesson_ends_at": format_ts(lesson.ends_at)}

    def args_for_device(self, session: Session, device: Device, now: datetime) -> dict[str, Any]:
        """Args for a manual check: those of the device's current or next lesson, if any.

        Fits ``fleet.actions.service.RunCheckArgs``.
        """
        lead = timedelta(minutes=self.config.lead_minutes)
        lesson = busy_lesson(session, device.classroom_id, now, lead)
        if lesson is not None:
            ends = load_ends(session, [lesson])[lesson.id]
            for end in ends:
                if end.classroom.id == device.classroom_id:
                    return self.args(end, ends) | self.window(session, device.id, lesson)
        return {"targets": {}, "uplink": True, "bandwidth_url": self.config.bandwidth_url or None}
