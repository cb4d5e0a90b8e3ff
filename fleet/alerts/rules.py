"""Rules: validated contract payloads in, :class:`Observation` of signals out.

Thresholds stay on the agent: every section and item carries ``ok`` and, when not ok, a
machine ``reason`` and a short ``message``; a rule only maps the reason to its alert
(by keyword, so "network_loss_high" and "loss" both land on ``network_loss``).  A
section that is not a JSON object is skipped and counted, never fatal: the other
sections of the same message still count.

Time: every function takes ``at``, the fleet's receive time, which the signals carry;
the payload's ``ts`` is the device's clock, kept in the details for display only, so an
agent whose clock is hours off neither freezes its tickets nor clears them late.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.contract import CheckVerdict, EventType
from fleet.alerts.signal import Observation, Signal
from fleet.db.models import CheckRun

__all__ = [
    "CHECK_TARGETS",
    "MISSING_RULES",
    "MalformedSection",
    "from_check",
    "from_event",
    "from_status",
    "from_telemetry",
    "rule_for_reason",
]

log = logging.getLogger(__name__)

Keywords = tuple[tuple[tuple[str, ...], str], ...]

_MISSING_WORDS: Final = ("missing", "absent", "disconnect", "removed", "not_found", "none")


@dataclass(frozen=True)
class _Family:
    """How one telemetry section's reasons map to rules."""

    kind: str  # the entity prefix: "camera", "target", "" for device-wide sections
    keywords: Keywords
    fallback: str
    missing: str | None = None  # the rule of an absent item, one ticket per kind
    # Measured only in checks: the telemetry repeats the last figures ungraded, so it
    # neither raises nor clears the rule; a check that measured the section does.
    check_only: bool = False

    @cached_property  # asked for every section of every telemetry message
    def rules(self) -> frozenset[str]:
        names = {rule for _, rule in self.keywords} | {self.fallback}
        return frozenset(names | ({self.missing} if self.missing else set()))

    def rule_for(self, reason: str) -> str:
        text = reason.lower()
        if self.missing and any(word in text for word in _MISSING_WORDS):
            return self.missing
        for words, rule in self.keywords:
            if any(word in text for word in words):
                return rule
        return self.fallback


_FAMILIES: Final[dict[str, _Family]] = {
    "cameras": _Family(
        "camera", ((("black",), "camera_black"), (("frozen", "freeze"), "camera_frozen")),
        "camera_fault", "camera_missing",
    ),
    "microphones": _Family(
        "microphone", ((("silent", "quiet"), "mic_silent"), (("clip",), "mic_clipping")),
        "mic_fault", "mic_missing",
    ),
    "speakers": _Family("speaker", (), "speaker_fault", "speaker_missing"),
    "displays": _Family("display", (), "display_fault", "display_disconnected"),
    "network": _Family(
        "target",
        (
            (("unreach", "timeout", "down"), "target_unreachable"),
            (("loss",), "network_loss"),
            (("jitter",), "network_jitter"),
            (("rtt", "latency", "delay"), "network_rtt"),
        ),
        "network_fault",
    ),
    "bandwidth": _Family("", (), "bandwidth_low", check_only=True),
    # Network cameras' streams ("stream:<id>") and encoders / recording hosts
    # ("avhost:<name>"), from the agent's avgear probe.
    "avgear": _Family(
        "stream",
        ((("stream",), "camera_stream_failed"), (("av_host",), "av_host_unreachable")),
        "avgear_fault",
    ),
    "system": _Family(
        "",
        (
            (("disk",), "disk_full"),
            (("temp", "heat", "thermal"), "overheating"),
            (("clock", "ntp", "sync"), "clock_unsynced"),
        ),
        "system_fault",
    ),
}

# A finding's reason -> the fault rule it feeds; a reason not here has no fault rule (its
# failed check is a check ticket of its own).  The agent's reasons, as in the reason
# catalogue of the wire contract v2, which is to replace this table.
_REASON_RULES: Final[dict[str, str]] = {
    "camera_missing": "camera_missing",
    "camera_black": "camera_black",
    "camera_frozen": "camera_frozen",
    "camera_capture_failed": "camera_fault",
    "microphone_missing": "mic_missing",
    "microphone_silent": "mic_silent",
    "microphone_clipping": "mic_clipping",
    "microphone_capture_failed": "mic_fault",
    "speaker_missing": "speaker_missing",
    "display_disconnected": "display_disconnected",
    "disk_full": "disk_full",
    "overheat": "overheating",
    "clock_unsynced": "clock_unsynced",
    "target_unreachable": "target_unreachable",
    "target_invalid": "target_unreachable",
    "dns_failed": "target_unreachable",
    "icmp_not_permitted": "network_fault",
    "network_rtt_high": "network_rtt",
    "network_jitter_high": "network_jitter",
    "network_loss_high": "network_loss",
    "dns_slow": "network_fault",
    "bandwidth_up_low": "bandwidth_low",
    "bandwidth_down_low": "bandwidth_low",
    "stream_unreachable": "camera_stream_failed",
    "stream_timeout": "camera_stream_failed",
    "stream_no_video": "camera_stream_failed",
    "stream_no_frame": "camera_stream_failed",
    "stream_unsupported": "avgear_fault",
    "ffmpeg_missing": "avgear_fault",
    "av_host_unreachable": "av_host_unreachable",
    "av_host_port_closed": "av_host_unreachable",
    "probe_error": "probe_failed",
    "probe_timeout": "probe_failed",
}


def rule_for_reason(reason: str) -> str | None:
    """The alert rule a finding's ``reason`` feeds, or None when no fault rule takes it
    (exact names, never substrings)."""
    return _REASON_RULES.get(reason)


# The hot-plug event's entity kind -> the rule of that kind going missing.
MISSING_RULES: Final[dict[str, str]] = {
    fam.kind: fam.missing for fam in _FAMILIES.values() if fam.missing is not None
}

#: The other end of a lesson, which only its checks measure (fleet.checks.plan names the
#: targets "peer" or "peer-<id>"): the telemetry's network section does not list it, so
#: it neither raises nor clears these tickets; the next check does.
CHECK_TARGETS: Final = ("target:peer",)

# Which measured number a network rule is about.
_TARGET_VALUES: Final = {
    "network_loss": "loss_pct",
    "network_jitter": "jitter_ms",
    "network_rtt": "rtt_ms",
}


class MalformedSection(ValueError):
    """A telemetry section or item that is not shaped as the contract says."""


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _text(data: Mapping[str, Any], lang: str) -> str:
    if own := data.get(f"message_{lang}"):
        return str(own)
    # The agent writes one bilingual ``message``: "中文 / English".
    zh, sep, en = str(data.get("message") or "").partition(" / ")
    return (zh if lang == "zh" else en or zh) if sep else zh


def _fault(
    device_id: str, at: datetime, rule: str, entity: str, data: Mapping[str, Any],
    value_key: str = "",
) -> Signal:
    value = _number(data.get(value_key)) if value_key else _number(data.get("value"))
    return Signal(
        rule=rule,
        device_id=device_id,
        active=True,
        at=at,
        entity=entity,
        value=value,
        threshold=_number(data.get("threshold")),
        details={k: v for k, v in data.items() if k not in ("devices", "targets")},
        message_zh=_text(data, "zh"),
        message_en=_text(data, "en"),
    )


def _items(name: str, section: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The section's (entity, item) pairs: devices by id, network targets by name."""
    family = _FAMILIES[name]
    if name == "network":
        targets = section.get("targets", {})
        if not isinstance(targets, Mapping):
            raise MalformedSection(f"network.targets is {type(targets).__name__}")
        pairs = list(targets.items())
    elif name == "avgear":
        return [(f"{kind}:{key}", item) for field, kind in (("streams", "stream"),
                                                             ("hosts", "avhost"))
                for key, item in _mapping(section, f"avgear.{field}", field).items()]
    elif family.kind:
        devices = section.get("devices", [])
        if not isinstance(devices, list):
            raise MalformedSection(f"{name}.devices is {type(devices).__name__}")
        pairs = [(str(d.get("id", i)) if isinstance(d, Mapping) else str(i), d)
                 for i, d in enumerate(devices)]
    else:
        return []
    for key, item in pairs:
        if not isinstance(item, Mapping):
            raise MalformedSection(f"{name} item {key!r} is not an object")
    return [(f"{family.kind}:{key}", item) for key, item in pairs]


def _mapping(section: Mapping[str, Any], where: str, field: str) -> Mapping[str, Any]:
    """``section[field]``: a mapping of objects, or MalformedSection naming ``where``."""
    value = section.get(field, {})
    if not isinstance(value, Mapping):
        raise MalformedSection(f"{where} is {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(item, Mapping):
            raise MalformedSection(f"{where} item {key!r} is not an object")
    return value


def _section_signals(device_id: str, at: datetime, name: str, section: Any) -> list[Signal]:
    if not isinstance(section, Mapping):
        raise MalformedSection(f"section {name!r} is {type(section).__name__}, not an object")
    family = _FAMILIES[name]
    out: list[Signal] = []
    for entity, item in _items(name, section):
        if item.get("ok", True) is False:
            rule = family.rule_for(str(item.get("reason", "")))
            ticket = family.kind if rule == family.missing else entity
            out.append(_fault(device_id, at, rule, ticket, item, _TARGET_VALUES.get(rule, "")))
    # A not-ok section without a reason of its own is just summing up its items.
    if section.get("ok", True) is False and (section.get("reason") or not out):
        rule = family.rule_for(str(section.get("reason", "")))
        if rule not in {s.rule for s in out}:
            entity = family.kind if rule == family.missing else ""
            out.append(_fault(device_id, at, rule, entity, section))
    return out


def from_telemetry(
    device_id: str, payload: Mapping[str, Any], at: datetime
) -> tuple[Observation, list[str]]:
    """The faults in a telemetry message, and the problems of sections it had to skip."""
    signals: list[Signal] = []
    covers: set[str] = set()
    problems: list[str] = []
    for name, section in payload["sections"].items():
        if name not in _FAMILIES:
            continue  # a newer agent's section: nothing to alert on yet
        try:
            signals.extend(_section_signals(device_id, at, name, section))
        except MalformedSection as exc:
            log.warning("telemetry from %s: %s (section skipped)", device_id, exc)
            problems.append(str(exc))
            continue
        if not _FAMILIES[name].check_only:
            covers |= _FAMILIES[name].rules
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
    if kind in (EventType.DEVICE_REMOVED, EventType.DEVICE_ADDED) and prefix in MISSING_RULES:
        # One ticket per kind: the telemetry's "camera missing" and this event agree.
        rule, entity, active = MISSING_RULES[prefix], prefix, kind is EventType.DEVICE_REMOVED
        details["id"] = name
    elif kind in (EventType.TARGET_UNREACHABLE, EventType.TARGET_REACHABLE):
        rule, active = "target_unreachable", kind is EventType.TARGET_UNREACHABLE
    elif kind in (EventType.PROBE_FAILED, EventType.PROBE_RECOVERED):
        rule, active = "probe_failed", kind is EventType.PROBE_FAILED
    else:
        return Observation(device_id, at)
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


def _ticket_entity(rule: str, entity: str) -> str:
    """The entity a finding's fault ticket has, as telemetry names the same fault: one
    ticket per kind for a missing device, none for the device-wide sections (system,
    bandwidth, a section-level network finding), else the item ("camera:<id>")."""
    kind, sep, _ = entity.partition(":")
    if rule in MISSING_RULES.values():
        return kind
    if not sep or kind == "bandwidth":
        return ""
    return entity


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
        if finding.get("level") != CheckVerdict.FAIL.value:
            continue
        rule = rule_for_reason(str(finding.get("reason", "")))
        if rule is None:
            unruled.append(finding)
            continue
        entity = _ticket_entity(rule, str(finding.get("entity", "")))
        faults.append(replace(
            _fault(device_id, at, rule, entity, finding),
            lesson_id=lesson_id,
            details={"request_id": request_id, **finding},
        ))
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
        for name, family in _FAMILIES.items()
        if isinstance(probes, Mapping) and isinstance(section := probes.get(name), Mapping)
        and not (family.check_only and section.get("sampled") is False)
        for rule in family.rules
    }
    return Observation(device_id, at, (*faults, signal), frozenset({"check_failed", *measured}))
