"""Rules: validated contract payloads in, :class:`Observation` of signals out.

Thresholds stay on the agent: every section carries its ``findings`` (contract v2; a v1
section's are derived by ``agent.contract.section_findings``), each with a catalogued
``reason``.  The reason's rule comes from the contract's catalogue through
:func:`rule_for_reason`, never from the reason's wording: a failure alerts when its reason
has a rule, a warning only where the catalogue says its warnings alert (``clock_unsynced``).
A section that is not a JSON object is skipped and counted, never fatal: the other
sections of the same message still count.

Time: every function takes ``at``, the fleet's receive time, which the signals carry;
the payload's ``ts`` is the device's clock, kept in the details for display only, so an
agent whose clock is hours off neither freezes its tickets nor clears them late.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.contract import (
    MISSING_REASONS,
    REASONS,
    SECTION_ENTITIES,
    CheckVerdict,
    EventType,
    section_findings,
)
from fleet.alerts.signal import Observation, Signal
from fleet.db.models import CheckRun

__all__ = [
    "CHECK_TARGETS",
    "SECTION_RULES",
    "MalformedSection",
    "alerts",
    "from_check",
    "from_event",
    "from_status",
    "from_telemetry",
    "rule_for_reason",
    "ticket_entity",
]

log = logging.getLogger(__name__)


def rule_for_reason(reason: str) -> str | None:
    """The alert rule a catalogued reason feeds; None for a reason that feeds none or that
    the catalogue does not know (the ingest refuses those before they get here)."""
    entry = REASONS.get(reason)
    return entry.rule if entry is not None else None


def alerts(level: str, reason: str) -> bool:
    """Whether a finding of ``level`` with ``reason`` raises its rule."""
    entry = REASONS.get(reason)
    if entry is None or entry.rule is None:
        return False
    return level == CheckVerdict.FAIL.value or (level == CheckVerdict.WARN.value
                                                and entry.alert_warn)


# The rules a missing device of each kind feeds: one ticket per kind, not per device, so
# the hot-plug event and the telemetry's absent device agree.
_MISSING_RULES: Final = frozenset(rule_for_reason(r) for r in MISSING_REASONS.values())
# Entity kinds about the whole device: their tickets name no entity.
_DEVICE_WIDE: Final = frozenset({"system", "network", "bandwidth"})

# Sections measured only in checks: the telemetry repeats the last figures ungraded, so
# it never clears what a check raised (the check that measures again does).
_CHECK_ONLY: Final = frozenset({"bandwidth"})

#: Telemetry section -> every rule its findings can raise: a section that came whole
#: reports on these completely, so their open alerts it no longer mentions clear.
SECTION_RULES: Final[Mapping[str, frozenset[str]]] = {
    name: frozenset(r.rule for r in REASONS.values() if r.rule and r.entity in kinds)
    for name, kinds in SECTION_ENTITIES.items()
}


def ticket_entity(rule: str, entity: str) -> str:
    """The entity of a finding's ticket: the kind for a missing device, none for the
    device-wide kinds, else the finding's own entity ("camera:<id>", "target:peer")."""
    kind = entity.partition(":")[0]
    if rule in _MISSING_RULES:
        return kind
    return "" if kind in _DEVICE_WIDE else entity

#: The other end of a lesson, which only its checks measure (fleet.checks.plan names the
#: targets "peer" or "peer-<id>"): the telemetry's network section does not list it, so
#: it neither raises nor clears these tickets; the next check does.
CHECK_TARGETS: Final = ("target:peer",)


class MalformedSection(ValueError):
    """A telemetry section or item that is not shaped as the contract says."""


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _signal(device_id: str, at: datetime, finding: Mapping[str, Any]) -> Signal | None:
    reason = str(finding.get("reason", ""))
    level = str(finding.get("level", ""))
    if not alerts(level, reason):
        return None
    rule = rule_for_reason(reason)
    assert rule is not None  # alerts() said so
    return Signal(
        rule=rule,
        device_id=device_id,
        active=True,
        at=at,
        entity=ticket_entity(rule, str(finding.get("entity", ""))),
        value=_number(finding.get("value")),
        threshold=_number(finding.get("threshold")),
        details=dict(finding),
        message_zh=str(finding.get("message_zh", "")),
        message_en=str(finding.get("message_en", "")),
    )


def _section_signals(device_id: str, at: datetime, name: str, section: Any) -> list[Signal]:
    if not isinstance(section, Mapping):
        raise MalformedSection(f"section {name!r} is {type(section).__name__}, not an object")
    out: dict[str, Signal] = {}
    for finding in section_findings(name, dict(section)):
        if not isinstance(finding, Mapping):
            raise MalformedSection(f"{name}.findings holds a {type(finding).__name__}")
        signal = _signal(device_id, at, finding)
        # Two findings on one ticket (up- and downlink both slow): the first tells.
        if signal is not None and signal.fingerprint not in out:
            out[signal.fingerprint] = signal
    return list(out.values())


def _broken(section: Any) -> bool:
    """A section a broken probe filled: it says nothing of the devices it should cover."""
    entry = REASONS.get(str(section.get("reason", ""))) if isinstance(section, Mapping) else None
    return entry is not None and entry.entity == "probe"


def from_telemetry(
    device_id: str, payload: Mapping[str, Any], at: datetime
) -> tuple[Observation, list[str]]:
    """The faults in a telemetry message, and the problems of sections it had to skip."""
    signals: list[Signal] = []
    covers: set[str] = set()
    problems: list[str] = []
    for name, section in payload["sections"].items():
        if name not in SECTION_ENTITIES:
            continue  # a newer agent's section: nothing to alert on yet
        try:
            signals.extend(_section_signals(device_id, at, name, section))
        except MalformedSection as exc:
            log.warning("telemetry from %s: %s (section skipped)", device_id, exc)
            problems.append(str(exc))
            continue
        if not _broken(section) and name not in _CHECK_ONLY:
            covers |= SECTION_RULES[name]
    observation = Observation(device_id, at, tuple(signals), frozenset(covers), CHECK_TARGETS)
    return observation, problems


def from_status(device_id: str, payload: Mapping[str, Any], at: datetime) -> Observation:
    """A Last Will carries the time its connection began: ``at`` is when it came."""
    signal = Signal(
        rule="device_offline",
        device_id=device_id,
        active=payload["state"] == "offline",
        at=at,
        details={"session": payload["session"], "agent_version": payload["agent_version"],
                 "device_ts": payload["ts"]},
    )
    return Observation(device_id, at, (signal,))


def from_event(device_id: str, payload: Mapping[str, Any], at: datetime) -> Observation:
    kind = EventType(payload["type"])
    entity = str(payload["entity"])
    prefix, _, name = entity.partition(":")
    detail = payload.get("detail")
    details: dict[str, Any] = dict(detail) if isinstance(detail, Mapping) else {}
    # Each event stands for a catalogued reason, whose rule it raises or clears.
    reason: str | None = None
    if kind in (EventType.DEVICE_REMOVED, EventType.DEVICE_ADDED) and prefix in MISSING_REASONS:
        # One ticket per kind: the telemetry's "camera missing" and this event agree.
        reason, active = MISSING_REASONS[prefix], kind is EventType.DEVICE_REMOVED
        details["id"] = name
    elif kind in (EventType.TARGET_UNREACHABLE, EventType.TARGET_REACHABLE):
        active = kind is EventType.TARGET_UNREACHABLE
        # A target this PC could not measure (no ICMP permission) is this PC's fault, not
        # the target's: the event names the telemetry finding's reason, and so its ticket.
        said = details.get("reason")
        cause = REASONS.get(said) if isinstance(said, str) else None
        reason = said if active and cause is not None and cause.entity == "target" else (
            "target_unreachable")
    elif kind in (EventType.PROBE_FAILED, EventType.PROBE_RECOVERED):
        reason, active = "probe_error", kind is EventType.PROBE_FAILED
    rule = rule_for_reason(reason) if reason is not None else None
    if rule is None:
        return Observation(device_id, at)
    entity = ticket_entity(rule, entity)
    signal = Signal(
        rule=rule,
        device_id=device_id,
        active=active,
        at=at,
        entity=entity,
        details=details,
        message_zh=str(payload.get("message_zh", "")),
        message_en=str(payload.get("message_en", "")),
    )
    return Observation(device_id, at, (signal,))


def from_check(
    session: Session, device_id: str, payload: Mapping[str, Any], at: datetime
) -> Observation:
    """A check's failing findings, each on the ticket of the fault it names.

    "Camera missing" found by the check and reported by the telemetry is one ticket (the
    check adds the lesson at stake), so one acknowledgement quiets it.  Only failing
    findings no fault rule takes make a ``check_failed`` ticket, one per device.  The
    CheckRun links the lesson: the checks scheduler writes it before sending the command;
    without one the check was run by hand or by the agent itself, and no lesson is named.
    A check reports in full on the sections it ran: their faults it does not find clear,
    as with telemetry, and so do those only a check measures (the other end's address;
    the bandwidth, when measured rather than looked on near a lesson).
    """
    request_id = payload.get("request_id")
    lesson_id = None
    if isinstance(request_id, str):
        lesson_id = session.scalar(
            select(CheckRun.lesson_id).where(CheckRun.request_id == request_id)
        )
    findings = [f for f in payload["findings"] if isinstance(f, Mapping)]
    failed = payload["verdict"] == CheckVerdict.FAIL.value
    faults: list[Signal] = []
    unruled: list[Mapping[str, Any]] = []
    for finding in findings:
        fault = _signal(device_id, at, finding)  # a warning too, where its reason alerts
        if fault is not None:
            faults.append(replace(fault, lesson_id=lesson_id,
                                  details={"request_id": request_id, **finding}))
        elif finding.get("level") == CheckVerdict.FAIL.value:
            unruled.append(finding)
    # A failed verdict with no failing finding at all still says the check failed.
    failing = unruled or ([] if faults else findings)
    signal = Signal(
        rule="check_failed",
        device_id=device_id,
        active=failed and (bool(unruled) or not faults),
        at=at,
        entity="check",
        lesson_id=lesson_id,
        details={"request_id": request_id, "verdict": payload["verdict"], "findings": findings},
        message_zh="；".join(str(f.get("message_zh", "")) for f in failing[:3]),
        message_en="; ".join(str(f.get("message_en", "")) for f in failing[:3]),
    )
    probes = payload.get("probes")
    measured = {
        rule
        for name, rules in SECTION_RULES.items()
        if isinstance(probes, Mapping) and isinstance(section := probes.get(name), Mapping)
        and not (name in _CHECK_ONLY and section.get("sampled") is False)
        for rule in rules
    }
    return Observation(device_id, at, (*faults, signal), frozenset({"check_failed", *measured}))
