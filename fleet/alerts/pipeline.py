"""The notification path in one place: a list of uniform stages, as in Alertmanager.

Every tick, after the life-cycle's timers have fired and resolved what was due, the open
alerts go through :data:`STAGES` in order.  Each stage is a function of one
:class:`Tick`, which carries what the stages hand on to each other:

- the mute stages (inhibit → maintenance → holiday → silence → lesson window) each add
  a :class:`~fleet.alerts.mute.Muter`; the first that mutes an alert names it (the
  lesson window holds a fault outside the lessons its rule matters in);
- ``timers`` records who became muted or unmuted and, for alerts nobody muted, runs
  escalation and reminders (they owe notices);
- ``group`` gathers owed notices by classroom and kind once they have waited
  ``group_wait``, and holds back the muted ones;
- ``route`` writes each group's message and finds its recipients;
- ``outbox`` queues one row per recipient and notes it on the tickets.

A new stage is one module under :mod:`fleet.alerts.stages` with a ``stage(tick)``
function, and one line in :data:`STAGES` where it belongs.
"""

from __future__ import annotations

from typing import Final

from fleet.alerts.stages import (
    group,
    holiday,
    inhibit,
    lesson_window,
    maintenance,
    outbox,
    route,
    silence,
    timers,
)
from fleet.alerts.stages.base import Stage, Tick

__all__ = ["STAGES", "run"]

STAGES: Final[tuple[Stage, ...]] = (
    inhibit.stage,
    maintenance.stage,
    holiday.stage,
    silence.stage,
    lesson_window.stage,
    timers.stage,
    group.stage,
    route.stage,
    outbox.stage,
)


def run(tick: Tick) -> None:
    for stage in STAGES:
        stage(tick)
