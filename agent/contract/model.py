"""The typed contract v2: one msgspec Struct per payload, per telemetry section and per
finding, and the decoder that checks what arrives against them.

Why msgspec: it decodes and validates in C (the fleet decodes every message of every
classroom), its Structs type-check under mypy, and it runs on the agent's Python 3.10.

What a decode promises: the envelope is exact (schema 1 or 2, the topic's device id, an
RFC 3339 ``ts`` with offset, a ``seq`` >= 0) and the kind's fields have their types and
ranges, or the whole message is refused with a :class:`ContractError`.  Inside an
accepted message, a part that breaks the contract (a section of the wrong type or with an
out-of-range value, a finding with an unknown reason) is dropped and named in
:attr:`Decoded.dropped`: the rest of the message still counts, and nothing unknown can
open a ticket.  Sections this version does not know (a newer agent's) pass unchecked.

v1: an agent of schema 1 put a failure's ``reason`` and ``message`` on the item or
section only, and its warnings nowhere.  Its telemetry is upgraded here to v2's shape:
each section without ``findings`` (every v1 section) gets those its fields imply (a
failing item's reason; a ``clock_synced`` of false is v2's ``clock_unsynced`` warning), so
the fleet reads one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from agent.contract.catalogue import REASONS, SECTION_ENTITIES
from agent.contract.wire import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    SCHEMAS,
    CheckVerdict,
    ContractError,
    EventType,
    Kind,
)

__all__ = [
    "AvGearSection",
    "BandwidthSection",
    "Check",
    "CmdResult",
    "Command",
    "Decoded",
    "DeviceItem",
    "DevicesSection",
    "Event",
    "Finding",
    "NetworkSection",
    "Status",
    "SystemSection",
    "Telemetry",
    "decode",
    "decode_message",
    "section_findings",
]

Ts = Annotated[datetime, msgspec.Meta(tz=True)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Pct = Annotated[float, msgspec.Meta(ge=0, le=100)]
NonNeg = Annotated[float, msgspec.Meta(ge=0)]
Dbfs = Annotated[float, msgspec.Meta(le=0)]


class Finding(msgspec.Struct, frozen=True):
    """One thing a technician should know, in both languages, with a catalogued code."""

    level: CheckVerdict  # warn or fail: a pass is not a finding
    reason: str  # a key of agent.contract.REASONS
    message_zh: str
    message_en: str
    entity: str = ""  # "camera:<id>", "target:peer", "system", "probe:cameras", ...
    value: float | None = None
    threshold: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return {k: v for k, v in out.items() if v is not None}


# --- telemetry sections: every field optional, as a broken probe's section carries only
# ok, reason and message ---------------------------------------------------------------

class Section(msgspec.Struct, kw_only=True):
    ok: bool = True
    reason: str | None = None  # the first failing finding's, when not ok
    message: str = ""  # "中文 / English"
    findings: list[Any] = []  # Finding, checked one by one (a bad one is dropped alone)


class SystemSection(Section, kw_only=True):
    cpu_pct: Pct | None = None
    mem_pct: Pct | None = None
    disk_pct: Pct | None = None
    temp_c: Annotated[float, msgspec.Meta(ge=-60, le=200)] | None = None
    uptime_s: NonNeg | None = None
    boot_time: Ts | None = None
    clock_synced: bool | None = None


class DeviceItem(msgspec.Struct, kw_only=True):
    id: str
    name: str = ""
    ok: bool = True
    reason: str | None = None
    message: str = ""
    present: bool = True
    expected: bool = True
    busy: bool = False
    sampled: bool | None = None
    sampled_at: Ts | None = None
    last_good_at: Ts | None = None
    level_dbfs: Dbfs | None = None
    peak_dbfs: Dbfs | None = None
    clipped_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    silent: bool | None = None


class DevicesSection(Section, kw_only=True):
    """cameras, microphones, speakers, displays."""

    devices: list[DeviceItem] = []
    count: Count | None = None


class Target(msgspec.Struct, kw_only=True):
    host: str = ""
    ok: bool = True
    reason: str | None = None
    message: str = ""
    rtt_ms: NonNeg | None = None
    jitter_ms: NonNeg | None = None
    loss_pct: Pct | None = None
    method: str | None = None


class NetworkSection(Section, kw_only=True):
    targets: dict[str, Target] = {}
    dns_ms: NonNeg | None = None


class BandwidthSection(Section, kw_only=True):
    up_mbps: NonNeg | None = None
    down_mbps: NonNeg | None = None
    tx_mbps: NonNeg | None = None
    rx_mbps: NonNeg | None = None
    measured_at: Ts | None = None
    sampled: bool | None = None


class AvItem(msgspec.Struct, kw_only=True):
    ok: bool = True
    reason: str | None = None
    message: str = ""
    port_ms: NonNeg | None = None
    icmp_ms: NonNeg | None = None


class AvGearSection(Section, kw_only=True):
    streams: dict[str, AvItem] = {}
    hosts: dict[str, AvItem] = {}


SECTION_TYPES: Final[dict[str, type[Section]]] = {
    "system": SystemSection,
    "cameras": DevicesSection,
    "microphones": DevicesSection,
    "speakers": DevicesSection,
    "displays": DevicesSection,
    "network": NetworkSection,
    "bandwidth": BandwidthSection,
    "avgear": AvGearSection,
}


# --- payloads ---------------------------------------------------------------------------

class Envelope(msgspec.Struct, kw_only=True):
    schema: Literal[1, 2]
    device_id: str
    ts: Ts


class FromAgent(Envelope, kw_only=True):
    seq: Count


class Status(FromAgent, kw_only=True):
    state: Literal["online", "offline"]
    agent_version: str
    session: Count
    inventory: dict[str, Any] | None = None
    interval: NonNeg | None = None


class Telemetry(FromAgent, kw_only=True):
    interval: Annotated[float, msgspec.Meta(gt=0)]
    sections: dict[str, Any]  # each known one checked against SECTION_TYPES on its own


class Event(FromAgent, kw_only=True):
    type: EventType
    entity: str
    detail: dict[str, Any] | None = None
    message_zh: str = ""
    message_en: str = ""


class Check(FromAgent, kw_only=True):
    verdict: CheckVerdict
    probes: dict[str, Any]
    findings: list[Any]  # Finding, checked one by one
    request_id: str | None = None
    lesson_id: str | int | None = None


class CmdResult(FromAgent, kw_only=True):
    id: str
    ok: bool
    reason: str | None = None
    message: str = ""


class Command(Envelope, kw_only=True):
    id: str
    name: str
    args: dict[str, Any]
    issued_at: str
    expires_at: str
    nonce: str
    seq: Count | None = None
    sig: str = ""


PAYLOAD_TYPES: Final[dict[Kind, type[Envelope]]] = {
    Kind.STATUS: Status,
    Kind.TELEMETRY: Telemetry,
    Kind.EVENT: Event,
    Kind.CHECK: Check,
    Kind.CMD: Command,
    Kind.CMD_RESULT: CmdResult,
}

# A refusal's reason by the field msgspec names (the fleet counts refusals by reason).
_FIELD_REASONS: Final = {"seq": "bad-seq", "state": "bad-state", "verdict": "bad-verdict",
                         "type": "bad-event", "ts": "bad-ts", "schema": "bad-schema"}


@dataclass
class Decoded:
    """An accepted payload (v2's shape) and the parts of it dropped, by reason."""

    payload: dict[str, Any]
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (reason, what)


def _too_deep(data: bytes, payload: Any) -> bool:
    # Nesting needs an opening bracket per level: most payloads are cleared by a count
    # at C speed, without a walk.
    if data.count(b"{") + data.count(b"[") <= MAX_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _problem(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    return "out-of-range" if any(op in text for op in (" >= ", " <= ", " > ", " < ",
                                                        "out of range")) else "bad-type"


def _refusal(exc: msgspec.ValidationError) -> ContractError:
    text = str(exc)
    path = text.rpartition("at `$.")[2].rstrip("`")
    name = path.split(".")[0].split("[")[0] if "at `$." in text else ""
    if text.startswith("Object missing required field"):
        reason = "missing-field"
    elif name in _FIELD_REASONS:
        reason = _FIELD_REASONS[name]
    else:
        reason = "out-of-range" if _problem(exc) == "out-of-range" else "bad-field"
    return ContractError(reason, text[:200])


def _split(message: Any) -> tuple[str, str]:
    zh, sep, en = str(message or "").partition(" / ")
    return zh, en if sep else zh


def section_findings(name: str, section: dict[str, Any]) -> list[dict[str, Any]]:
    """A known section's findings: its own (v2), or those its fields imply (v1)."""
    if "findings" in section:
        found = section["findings"]
        return found if isinstance(found, list) else []
    return _v1_findings(name, section)


def _v1_findings(name: str, section: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings a v1 section implies: its failing items', its own, a false clock."""
    kind = SECTION_ENTITIES[name][0]
    found: list[dict[str, Any]] = []

    def add(item: Any, entity: str) -> None:
        if isinstance(item, dict) and item.get("ok") is False and item.get("reason"):
            zh, en = _split(item.get("message"))
            found.append({"level": "fail", "reason": item["reason"], "message_zh": zh,
                          "message_en": en, "entity": entity})

    if name == "network":
        for key, item in _mapping(section.get("targets")).items():
            add(item, f"target:{key}")
    elif name == "avgear":
        for field_name, prefix in (("streams", "stream"), ("hosts", "avhost")):
            for key, item in _mapping(section.get(field_name)).items():
                add(item, f"{prefix}:{key}")
    elif isinstance(section.get("devices"), list):
        for item in section["devices"]:
            add(item, f"{kind}:{item.get('id', '') if isinstance(item, dict) else ''}")
    reason = section.get("reason")
    if reason and reason not in {f["reason"] for f in found}:
        broken = reason in ("probe_error", "probe_timeout")
        whole = f"probe:{name}" if broken else (kind if kind in ("system", "bandwidth") else
                                                "network" if name == "network" else
                                                f"{kind}:*")
        add(section, whole)
    if name == "system" and section.get("clock_synced") is False:
        found.append({"level": "warn", "reason": "clock_unsynced",
                      "message_zh": "系统时钟未同步", "message_en": "system clock not "
                      "synchronised", "entity": "system"})
    return found


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _findings(raw: Any, where: str, dropped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The findings of ``raw`` that are Findings with a catalogued reason; the rest named
    in ``dropped``."""
    kept: list[dict[str, Any]] = []
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            finding = msgspec.convert(item, Finding)
        except msgspec.ValidationError as exc:
            dropped.append(("bad-finding", f"{where}[{i}]: {str(exc)[:120]}"))
            continue
        if finding.reason not in REASONS:
            dropped.append(("unknown-reason", f"{where}[{i}]: {finding.reason[:60]!r}"))
            continue
        kept.append(item)
    return kept


def _worst(findings: list[dict[str, Any]], verdict: str) -> str:
    levels = {f["level"] for f in findings}
    worst = next((v for v in (CheckVerdict.FAIL, CheckVerdict.WARN) if v.value in levels),
                 CheckVerdict.PASS)
    # Never raised: a pass with a failing finding stays the agent's pass.
    return verdict if verdict == CheckVerdict.PASS.value else worst.value


def _sections(sections: dict[str, Any], dropped: list[tuple[str, str]],
              findings: bool = True) -> None:
    """Drop the known sections that break their Struct; with ``findings``, give each kept
    one its catalogued findings (a check's sections need none: the check lists them)."""
    for name in list(sections):
        kind = SECTION_TYPES.get(name)
        if kind is None:
            continue  # a newer agent's section: passed on unchecked, alerted on by nothing
        section = sections[name]
        try:
            msgspec.convert(section, kind)
        except msgspec.ValidationError as exc:
            dropped.append((_problem(exc) if isinstance(section, dict) else "bad-type",
                            f"section {name}: {str(exc)[:160]}"))
            del sections[name]
            continue
        if findings:
            section["findings"] = _findings(section_findings(name, section),
                                            f"{name}.findings", dropped)


def _parse(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError("too-large", f"payload is {len(data)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        payload = msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        # Not JSON (a bad UTF-8 byte), NaN or Infinity, a number beyond a float or an
        # int64, arrays nested thousands deep: none of it is JSON an agent sends.
        raise ContractError("bad-json", f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise ContractError("bad-json", "payload is not a JSON object")
    if _too_deep(data, payload):
        raise ContractError("too-deep", f"payload nests deeper than {MAX_DEPTH} levels")
    return payload


def decode_message(device_id: str, kind: Kind, data: bytes) -> Decoded:
    """Parse, check and upgrade one payload received on ``device_id``'s ``kind`` topic.

    The device id inside the payload must equal the one in the topic: the broker's ACL
    pins a device's credentials to its own topics, and this pins the payload to them.
    """
    payload = _parse(data)
    schema = payload.get("schema")
    if isinstance(schema, bool) or schema not in SCHEMAS:
        raise ContractError("bad-schema", f"schema {schema!r}, expected one of {SCHEMAS}")
    if payload.get("device_id") != device_id:
        raise ContractError("device-mismatch",
                            f"payload device_id {payload.get('device_id')!r} on topic of "
                            f"{device_id!r}")
    if not isinstance(payload.get("ts"), str):
        raise ContractError("bad-ts", "ts missing")
    try:
        msgspec.convert(payload, PAYLOAD_TYPES[kind])
    except msgspec.ValidationError as exc:
        raise _refusal(exc) from None
    dropped: list[tuple[str, str]] = []
    if kind is Kind.TELEMETRY:
        _sections(payload["sections"], dropped)
    elif kind is Kind.CHECK:
        _sections(payload["probes"], dropped, findings=False)
        payload["findings"] = _findings(payload["findings"], "findings", dropped)
        if dropped:
            # A verdict that rested on a dropped finding would still open a ticket: it is
            # clamped to what the kept findings say.
            payload["verdict"] = _worst(payload["findings"], payload["verdict"])
    # The schema field stays as sent (a v1 command's signature covers it); the shape is
    # v2's either way.
    return Decoded(payload, dropped)


def decode(device_id: str, kind: Kind, data: bytes) -> dict[str, Any]:
    """:func:`decode_message`'s payload, for callers that do not count dropped parts."""
    return decode_message(device_id, kind, data).payload
