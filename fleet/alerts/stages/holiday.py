"""Holiday: closed days of the school calendar mute the places they close (a school's
停课 that school, a province-wide holiday everything), unless configured not to."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fleet.alerts.mute import Holidays
from fleet.alerts.stages.base import Tick
from fleet.timetable.calendar import Calendar


def stage(tick: Tick) -> None:
    if not tick.config.mute_on_holidays:
        return
    timezone = tick.config.timezone
    day = tick.now.astimezone(ZoneInfo(timezone)).date()
    tick.mute(Holidays(Calendar.load(tick.session, day, day), timezone))
