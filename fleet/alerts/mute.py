"""Mutes: every suppression source answers one question, "does this mute these labels?".

Alertmanager's ``notify/mute.go`` shape: inhibition (the device is offline, so its
camera/mic/network alerts say nothing new), recurring maintenance windows (nights,
weekends), the timetable's holidays, and one-off silences.  Each returns the reason it
mutes, recorded on the alert as ``suppressed_by``; a muted alert still exists and is
queryable, only its notifications are held back.  The mute stages of
:mod:`fleet.alerts.pipeline` load them each tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from fleet.db.models import AlertState, MaintenanceWindow, Silence
from fleet.timetable.calendar import Calendar, Place

__all__ = [
    "MATCHER_LABELS",
    "OPEN_STATES",
    "Holidays",
    "Inhibition",
    "Maintenance",
    "Muter",
    "Silences",
    "add_silence",
    "add_window",
    "matches",
    "muted_by",
    "parse_hhmm",
    "validate_matchers",
    "validate_window",
]

MATCHER_LABELS: Final = frozenset(
    {"rule", "device_id", "classroom_id", "school_id", "county_id", "severity"}
)

OPEN_STATES: Final = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)


class Muter(Protocol):
    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        """Why these labels are muted at ``now``, or None."""


def validate_matchers(matchers: Mapping[str, Any]) -> dict[str, str]:
    """Equality matchers on known labels; an empty set would mute everything."""
    if not matchers:
        raise ValueError("matchers must name at least one label")
    unknown = set(matchers) - MATCHER_LABELS
    if unknown:
        raise ValueError(
            f"unknown matcher label(s) {sorted(unknown)}; known: {sorted(MATCHER_LABELS)}"
        )
    return {k: str(v) for k, v in matchers.items()}


def matches(matchers: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == str(v) for k, v in matchers.items())


def parse_hhmm(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{text!r} is not a HH:MM time") from None


def add_silence(
    session: Session,
    matchers: Mapping[str, Any],
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str = "",
) -> Silence:
    for name, when in (("starts_at", starts_at), ("ends_at", ends_at)):
        if when.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    silence = Silence(matchers=validate_matchers(matchers), starts_at=starts_at,
                      ends_at=ends_at, created_by=created_by, comment=comment)
    session.add(silence)
    session.flush()
    return silence


def add_window(
    session: Session,
    name: str,
    weekdays: Sequence[int],
    start_time: str,
    end_time: str,
    matchers: Mapping[str, Any],
    timezone: str,
) -> MaintenanceWindow:
    """A recurring mute; empty ``matchers`` cover every alert."""
    validate_window(weekdays, start_time, end_time, timezone)
    window = MaintenanceWindow(
        name=name,
        matchers=validate_matchers(matchers) if matchers else {},
        weekdays=sorted(set(weekdays)),
        start_time=start_time,
        end_time=end_time,
        timezone=timezone,
    )
    session.add(window)
    session.flush()
    return window


def validate_window(weekdays: Sequence[int], start: str, end: str, tz: str) -> None:
    if not weekdays or any(not isinstance(d, int) or not 0 <= d <= 6 for d in weekdays):
        raise ValueError(f"weekdays {list(weekdays)!r} must be 0 (Monday) .. 6 (Sunday)")
    parse_hhmm(start)
    parse_hhmm(end)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {tz!r} is unknown") from None


@dataclass(frozen=True)
class Inhibition:
    """An offline device's other alerts say nothing new: mute them (never their recovery)."""

    offline_devices: frozenset[str]

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        if labels.get("rule") != "device_offline" and labels.get("device_id") in (
            self.offline_devices
        ):
            return "inhibited: device offline / 设备离线"
        return None


@dataclass(frozen=True)
class Maintenance:
    windows: tuple[MaintenanceWindow, ...]
    # The school calendar around now: a make-up workday (调休) is, for the places it
    # covers, the weekday whose lessons it runs, so a weekend window does not mute it.
    calendar: Calendar = field(default_factory=Calendar)

    @staticmethod
    def active(window: MaintenanceWindow, now: datetime, calendar: Calendar | None = None,
               place: Place | None = None) -> bool:
        """Whether ``now`` is inside the window; a range that wraps midnight belongs to
        the weekday it starts on ("Fri 22:00-06:00" covers Saturday 03:00)."""
        local = now.astimezone(ZoneInfo(window.timezone))
        start, end, clock = parse_hhmm(window.start_time), parse_hhmm(window.end_time), local.time()
        days = set(window.weekdays)

        def weekday(day: date) -> int:  # 0 = Monday, as windows count
            entry = None if calendar is None else calendar.deciding(day, place or Place())
            if entry is not None and entry.runs_weekday is not None:
                return entry.runs_weekday - 1
            return day.weekday()

        today, yesterday = weekday(local.date()), weekday(local.date() - timedelta(days=1))
        if start == end:  # the whole day
            return today in days
        if start < end:
            return today in days and start <= clock < end
        return (today in days and clock >= start) or (yesterday in days and clock < end)

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        for window in self.windows:
            if matches(window.matchers, labels) and self.active(
                    window, now, self.calendar, Place.of_labels(labels)):
                return f"maintenance #{window.id} {window.name}"
        return None


@dataclass(frozen=True)
class Holidays:
    """Closed days of the school calendar mute only the places they close (a school's
    停课 mutes that school; a province-wide holiday everything)."""

    calendar: Calendar
    timezone: str

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        day = now.astimezone(ZoneInfo(self.timezone)).date()
        closed = self.calendar.closure(day, Place.of_labels(labels))
        if closed is not None:
            return f"holiday {day.isoformat()} {closed.name}".rstrip()
        return None


@dataclass(frozen=True)
class Silences:
    silences: tuple[Silence, ...]

    def muted_by(self, labels: Mapping[str, str], now: datetime) -> str | None:
        for silence in self.silences:
            if silence.starts_at <= now < silence.ends_at and matches(silence.matchers, labels):
                return f"silence #{silence.id} by {silence.created_by}"
        return None


def muted_by(muters: Iterable[Muter], labels: Mapping[str, str], now: datetime) -> str | None:
    for muter in muters:
        reason = muter.muted_by(labels, now)
        if reason:
            return reason
    return None
