"""Maintenance: recurring windows (nights, weekends) mute the alerts they match; a make-up
workday (调休) counts as the weekday it runs for the places it covers."""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from fleet.alerts.mute import Maintenance, validate_window
from fleet.alerts.stages.base import Tick
from fleet.db.models import MaintenanceWindow
from fleet.timetable.calendar import Calendar

log = logging.getLogger(__name__)


def _usable(window: MaintenanceWindow) -> bool:
    """A window written around the API with a bad time or zone is skipped, loudly, so one
    bad row cannot stop every alert's timers."""
    try:
        validate_window(window.weekdays, window.start_time, window.end_time, window.timezone)
    except (ValueError, TypeError) as exc:
        log.error("maintenance window #%s %r ignored: %s", window.id, window.name, exc)
        return False
    return True


def stage(tick: Tick) -> None:
    windows = tick.session.scalars(select(MaintenanceWindow))
    # A day each side: windows have their own zones, and one wrapping midnight started
    # the day before.
    day = tick.now.astimezone(ZoneInfo(tick.config.timezone)).date()
    calendar = Calendar.load(tick.session, day - timedelta(days=2), day + timedelta(days=1))
    tick.mute(Maintenance(tuple(w for w in windows if _usable(w)), calendar))
