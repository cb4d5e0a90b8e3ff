"""What the stages of :mod:`fleet.alerts.pipeline` hand on to each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from fleet.alerts.config import AlertConfig
from fleet.alerts.mute import Muter
from fleet.alerts.notices import Enqueue
from fleet.alerts.recipients import Recipient
from fleet.alerts.render import Message
from fleet.db.models import Alert, Lesson

if TYPE_CHECKING:  # the lesson_window stage's module imports this one
    from fleet.alerts.stages.lesson_window import LessonWindows

__all__ = ["Group", "Outgoing", "Record", "Stage", "Tick"]

#: Writes one history row on an alert: (alert, kind, text).
Record = Callable[[Alert, str, str], None]


@dataclass
class Group:
    """Notices of one kind about one classroom's alerts, sent as one message."""

    classroom_id: int | None
    kind: str
    alerts: list[Alert]


@dataclass
class Outgoing:
    """A group's message and who gets it (``skipped``: a recovery's unknowing routes)."""

    group: Group
    message: Message
    to: list[Recipient]
    skipped: list[Recipient]
    about: dict[str, object]


@dataclass
class Tick:
    """One pass of the open alerts through the stages."""

    session: Session
    config: AlertConfig
    now: datetime
    alerts: Sequence[Alert]  # the open alerts (pending, firing, acknowledged)
    lessons: dict[int, list[Lesson]]  # classroom id -> lessons under way now
    record: Record
    escalate: Callable[[Alert, str], None]
    enqueue: Enqueue
    sent: Counter[tuple[str, str]]  # (kind, channel) -> notifications queued
    # The lesson windows at ``now`` (the life-cycle's, which its up-delays just used).
    windows: LessonWindows
    muters: list[Muter] = field(default_factory=list)
    # Whether the alert's device is in a lesson window (the lesson_window stage's answer;
    # before it, or without it, never).
    in_lesson: Callable[[Alert], bool] = lambda alert: False
    muted: dict[int, str] = field(default_factory=dict)  # alert id -> first mute's reason
    groups: list[Group] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)

    def mute(self, muter: Muter) -> None:
        """A mute stage's contribution: alerts no earlier stage muted may be muted here."""
        self.muters.append(muter)
        for alert in self.alerts:
            if alert.id not in self.muted and (reason := muter.muted_by(alert.labels, self.now)):
                self.muted[alert.id] = reason


Stage = Callable[[Tick], None]
