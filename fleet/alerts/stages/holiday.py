"""Holiday: the timetable's holidays mute everything, unless configured not to."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from fleet.alerts.mute import Holidays
from fleet.alerts.stages.base import Tick
from fleet.db.models import Holiday


def stage(tick: Tick) -> None:
    if not tick.config.mute_on_holidays:
        return
    timezone = tick.config.timezone
    day = tick.now.astimezone(ZoneInfo(timezone)).date()
    rows = tick.session.scalars(select(Holiday).where(Holiday.day == day))
    tick.mute(Holidays({h.day: h.name for h in rows}, timezone))
