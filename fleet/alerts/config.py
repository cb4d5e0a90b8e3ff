"""The ``[alerts]`` config table: delays, reminders, escalation, grouping, channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet.alerts.signal import RULES

__all__ = ["ALWAYS", "CHECKS", "LESSONS", "WHEN_DEFAULTS", "AlertConfig"]

# When a fault matters (its rule's "when"): ALWAYS pages whenever it fires; LESSONS in its
# device's lesson window (from that device's first pre-class check to the lesson's end);
# CHECKS only in the pre-class check period (first check to the lesson's start).  Outside
# it a ticket is recorded, shown and reported but held, and paged if still open when the
# next window opens (see fleet.alerts.stages.lesson_window).
ALWAYS, LESSONS, CHECKS = "always", "lessons", "checks"

# What a county technician wants by default: the PC itself (offline, silent, disk, heat,
# clock) and the checks' own verdicts always; what only a lesson uses (cameras,
# microphones, speakers, displays, the network to the other end, AV gear) in and
# around lessons, so a projector switched off at 17:00 wakes nobody; the bandwidth,
# measured only by a check, in the checks.  A rule not named here is ALWAYS: a new
# rule is never held by accident.
WHEN_DEFAULTS: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("camera_missing", "camera_black", "camera_frozen", "camera_fault", "mic_missing",
         "mic_silent", "mic_clipping", "mic_fault", "speaker_missing",
         "display_disconnected", "target_unreachable", "network_loss",
         "network_jitter", "network_rtt", "network_fault", "camera_stream_failed",
         "av_host_unreachable", "avgear_fault", "probe_failed"),
        LESSONS,
    ),
    "bandwidth_low": CHECKS,
}


def _default_up() -> dict[str, float]:
    # Netdata's ``delay: up`` idea: a fault must last this long before anyone is told.
    # Offline waits out a quick agent restart or an MQTT reconnect (keepalive 1.5x);
    # network numbers wobble, so they must persist for a minute; a missing camera is
    # unambiguous and the technician should hear about it at once.  A clock's skew is
    # measured on live messages, and one that queued behind a backlog looks slow until
    # the next prompt one: five minutes of it is a clock, not a queue.
    return {
        "clock_skew": 300.0,
        "device_offline": 30.0,
        "network_loss": 60.0,
        "network_jitter": 60.0,
        "network_rtt": 60.0,
        "target_unreachable": 60.0,
        "bandwidth_low": 60.0,
        "camera_missing": 0.0,
        "check_failed": 0.0,
    }


def _default_lesson_up() -> dict[str, float]:
    # In a lesson window an offline PC is news at once (issue 13: inbox within 20 s of a
    # cut, the broker's 15 s keepalive included); a restart is refused there anyway.
    return {"device_offline": 0.0}


def _default_down() -> dict[str, float]:
    # Silence ends with the first word from the device: nothing to damp.
    return {"device_offline": 30.0, "check_failed": 0.0, "check_no_answer": 0.0,
            "device_never_connected": 0.0}


@dataclass(frozen=True)
class AlertConfig:
    # Seconds a fault must persist before it fires, per rule; others use up_delay_s.
    up_delays: dict[str, float] = field(default_factory=_default_up)
    up_delay_s: float = 0.0
    # Seconds a fault must stay clear before it resolves (damps flapping), per rule.
    down_delays: dict[str, float] = field(default_factory=_default_down)
    down_delay_s: float = 60.0
    # The same fault coming back within this window reopens its ticket (MTR-style).
    reopen_window_s: float = 3600.0
    # Reminder while firing and not acknowledged (Alertmanager's repeat_interval).
    reminder_interval_s: float = 1800.0
    # Not acknowledged after this long -> the county 电教 contacts are told.
    escalate_after_s: float = 900.0
    # Faults of one classroom that fire within this window go out as one message.
    group_wait_s: float = 30.0
    # When each rule matters, overriding WHEN_DEFAULTS: "always", "lessons" or "checks".
    when: dict[str, str] = field(default_factory=dict)
    # In a lesson window (see ``when``): the group wait, and up-delays overriding
    # up_delays (rules not named keep theirs).  Outside, the damping above holds.
    lesson_group_wait_s: float = 2.0
    lesson_up_delays: dict[str, float] = field(default_factory=_default_lesson_up)
    # Lessons starting within this many hours (or in progress) are named in the texts.
    context_horizon_h: float = 4.0
    # Local time for holidays and lesson times when a school names none.
    timezone: str = "Asia/Shanghai"
    # Holidays the timetable knows mute notifications, like a maintenance window.
    mute_on_holidays: bool = True
    # Generic JSON webhooks that receive every notification (channel "webhook").
    webhooks: list[str] = field(default_factory=list)
    # The web page's address, linked from texts when set, e.g. "https://fleet.example/".
    base_url: str = ""
    # Seconds between re-reading which tickets are open, for those another fleet process
    # (a second consumer of the shared subscription) opened or closed.
    index_resync_s: float = 30.0

    def __post_init__(self) -> None:
        numbers = {
            "up_delay_s": self.up_delay_s,
            "down_delay_s": self.down_delay_s,
            "reopen_window_s": self.reopen_window_s,
            "group_wait_s": self.group_wait_s,
            "lesson_group_wait_s": self.lesson_group_wait_s,
            "context_horizon_h": self.context_horizon_h,
            "index_resync_s": self.index_resync_s,
            **{f"up_delays.{k}": v for k, v in self.up_delays.items()},
            **{f"down_delays.{k}": v for k, v in self.down_delays.items()},
            **{f"lesson_up_delays.{k}": v for k, v in self.lesson_up_delays.items()},
        }
        for name, value in numbers.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name, value in (
            ("reminder_interval_s", self.reminder_interval_s),
            ("escalate_after_s", self.escalate_after_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is unknown") from None
        for rule, when in self.when.items():
            if rule not in RULES:
                raise ValueError(f"when.{rule}: no such rule; known: {sorted(RULES)}")
            if when not in (ALWAYS, LESSONS, CHECKS):
                raise ValueError(f"when.{rule} must be {ALWAYS!r}, {LESSONS!r} or "
                                 f"{CHECKS!r}, got {when!r}")
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")

    def up_delay(self, rule: str, in_lesson: bool = False) -> float:
        if in_lesson and rule in self.lesson_up_delays:
            return self.lesson_up_delays[rule]
        return self.up_delays.get(rule, self.up_delay_s)

    def matters(self, rule: str) -> str:
        """When ``rule``'s faults are paged: ALWAYS, LESSONS or CHECKS."""
        return self.when.get(rule, WHEN_DEFAULTS.get(rule, ALWAYS))

    def group_wait(self, in_lesson: bool) -> float:
        return self.lesson_group_wait_s if in_lesson else self.group_wait_s

    def down_delay(self, rule: str) -> float:
        return self.down_delays.get(rule, self.down_delay_s)
