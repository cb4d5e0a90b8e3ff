"""The wire: MQTT topics, the envelope, encoding, commands' signing bytes.

Topics, under a configurable prefix (default ``syncclass/v1``), per device ``DEVICE``::

    PREFIX/dev/DEVICE/status       retained; birth ("online") and Last Will ("offline")
    PREFIX/dev/DEVICE/telemetry    QoS 1, every interval
    PREFIX/dev/DEVICE/event        QoS 1, immediate (hot-plug, target unreachable, ...)
    PREFIX/dev/DEVICE/check        QoS 1, result of a pre-class check
    PREFIX/dev/DEVICE/cmd          QoS 1, fleet -> agent, signed command
    PREFIX/dev/DEVICE/cmd/result   QoS 1, agent -> fleet, the command's answer

Every payload is a JSON object carrying ``schema`` (2; the fleet also takes 1),
``device_id``, ``ts`` (RFC 3339, UTC) and, for agent-sent payloads, a per-device ``seq``
that survives restarts.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.compat import UTC, StrEnum

__all__ = [
    "BANDWIDTH_TOKEN_PARAM",
    "CAP_EXPECTED",
    "CAP_LESSON_WINDOW",
    "CAP_PASSIVE",
    "COMMAND_NAMES",
    "COMMAND_SCHEMA",
    "DEFAULT_PREFIX",
    "DEVICE_ID_RE",
    "EXPECTED_ROLES",
    "MAX_DEPTH",
    "MAX_EXPECTED",
    "MAX_PAYLOAD_BYTES",
    "QOS",
    "SCHEMA",
    "SCHEMAS",
    "SECTIONS",
    "CheckVerdict",
    "ContractError",
    "EventType",
    "Kind",
    "RefusalReason",
    "b64",
    "bandwidth_token",
    "check_expected",
    "command_signing_bytes",
    "encode",
    "envelope",
    "format_ts",
    "parse_topic",
    "parse_ts",
    "subscription",
    "topic",
    "unb64",
    "utcnow",
    "validate_device_id",
    "with_bandwidth_token",
]

SCHEMA: Final = 2
#: Every schema the fleet takes: a v1 payload is upgraded to v2 as it is decoded.
SCHEMAS: Final = (1, 2)
#: Commands (fleet -> agent) keep schema 1: their shape did not change in v2, and a v1
#: agent refuses a command of any other schema as malformed.
COMMAND_SCHEMA: Final = 1
DEFAULT_PREFIX: Final = "syncclass/v1"
# Mosquitto and EMQX accept far more, but a classroom uplink is thin and a fleet ingests
# tens of thousands of these: anything bigger is a bug on the sending side.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
# The agent's payloads nest five levels; anything near Python's recursion limit would
# break whoever copies or re-encodes it later (a state snapshot, a database write).
MAX_DEPTH: Final = 32
DEVICE_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Kind(StrEnum):
    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENT = "event"
    CHECK = "check"
    CMD = "cmd"
    CMD_RESULT = "cmd/result"


QOS: Final[dict[Kind, int]] = {kind: 1 for kind in Kind}

#: Telemetry sections, each produced by one agent probe.
SECTIONS: Final = (
    "system",
    "cameras",
    "microphones",
    "speakers",
    "displays",
    "network",
    "bandwidth",
    "avgear",  # RTSP cameras' streams and network encoders / recording hosts
)


class EventType(StrEnum):
    DEVICE_ADDED = "device_added"  # a camera / microphone / speaker / display appeared
    DEVICE_REMOVED = "device_removed"
    TARGET_UNREACHABLE = "target_unreachable"
    TARGET_REACHABLE = "target_reachable"
    PROBE_FAILED = "probe_failed"
    PROBE_RECOVERED = "probe_recovered"
    SPOOL_DROPPED = "spool_dropped"  # the offline spool was full and dropped old records


class CheckVerdict(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


COMMAND_NAMES: Final = frozenset({"run-check", "reboot", "restart-service", "set-interval",
                                  "set-expected"})

#: The roles a ``set-expected`` command (args: role -> list of device ids, as the agent
#: names them) sets the expected devices of, and how many ids one role may list.
EXPECTED_ROLES: Final = ("cameras", "microphones", "speakers")
MAX_EXPECTED: Final = 32


#: The query parameter of a run-check's ``bandwidth_url`` that carries the device's
#: short-lived token for the fleet's bandwidth test endpoint (a pre-signed URL).  It is
#: in the URL, not a run-check arg of its own, because an agent refuses a run-check with
#: an arg it does not know: v1 agents send the URL as given and so carry the token.
BANDWIDTH_TOKEN_PARAM: Final = "token"


#: Capabilities an agent lists in its birth (``inventory.agent.capabilities``): the
#: run-check args it takes beyond v1's.  A fleet sends such an arg only to an agent that
#: lists it, for the same reason as above: an older agent refuses it as bad-args.
CAP_LESSON_WINDOW: Final = "run-check.lesson-window"  # lesson_starts_at, lesson_ends_at
CAP_PASSIVE: Final = "run-check.passive"  # passive: no picture, sound or throughput sampled
#: An agent that takes the ``set-expected`` command (older agents refuse it as an unknown
#: command); its birth then also reports its baseline (``inventory.agent.expected``).
CAP_EXPECTED: Final = "set-expected"


# An alert's entity is "<role>:<id>" in at most 128 characters ("microphone:" is 11).
_EXPECTED_ID_MAX = 110


def check_expected(value: Any) -> dict[str, list[str]]:
    """A ``set-expected`` args object (also the inventory's ``expected`` table), checked:
    role -> device ids.  At least one role; an empty list expects none of that role."""
    if not isinstance(value, dict) or not value:
        raise ContractError("bad-expected", f"must name one or more of {', '.join(EXPECTED_ROLES)}")
    checked: dict[str, list[str]] = {}
    for role, ids in value.items():
        if role not in EXPECTED_ROLES:
            raise ContractError("bad-expected",
                                f"{role!r} is not one of {', '.join(EXPECTED_ROLES)}")
        if not isinstance(ids, list) or len(ids) > MAX_EXPECTED:
            raise ContractError("bad-expected",
                                f"{role} must be a list of at most {MAX_EXPECTED} device ids")
        for dev_id in ids:
            if (not isinstance(dev_id, str) or not 0 < len(dev_id) <= _EXPECTED_ID_MAX
                    or not dev_id.isprintable() or any(c.isspace() for c in dev_id)):
                raise ContractError("bad-expected", f"{role}: {dev_id!r} is not a device id "
                                    f"(1-{_EXPECTED_ID_MAX} printable, no spaces)")
        if len(set(ids)) != len(ids):
            raise ContractError("bad-expected", f"{role} lists a device twice")
        checked[role] = list(ids)
    return checked


def with_bandwidth_token(url: str, token: str) -> str:
    """``url`` with ``token`` as its BANDWIDTH_TOKEN_PARAM (replacing one already there)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k != BANDWIDTH_TOKEN_PARAM]
    query.append((BANDWIDTH_TOKEN_PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def bandwidth_token(url: str) -> tuple[str, str | None]:
    """``url`` without its token, and the token (None when it carries none)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tokens = [v for k, v in query if k == BANDWIDTH_TOKEN_PARAM]
    if not tokens:
        return url, None
    rest = urlencode([(k, v) for k, v in query if k != BANDWIDTH_TOKEN_PARAM])
    return urlunsplit(parts._replace(query=rest)), tokens[-1]


class RefusalReason(StrEnum):
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REPLAYED = "replayed"
    FOREIGN_DEVICE = "foreign-device"
    UNKNOWN_COMMAND = "unknown-command"
    NOT_ALLOWED = "not-allowed"
    BAD_ARGS = "bad-args"
    MALFORMED = "malformed"
    FAILED = "failed"


class ContractError(ValueError):
    """A payload or topic that breaks the contract.

    ``reason`` is a stable machine-readable code (counted by the fleet's metrics);
    ``message`` says what was wrong for a log line.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def validate_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id):
        raise ContractError("bad-device-id", f"{device_id!r} is not {DEVICE_ID_RE.pattern}")
    return device_id


def topic(prefix: str, device_id: str, kind: Kind) -> str:
    return f"{prefix}/dev/{validate_device_id(device_id)}/{kind.value}"


def subscription(prefix: str, kind: Kind, share_group: str | None = None) -> str:
    """The topic filter for one kind from every device.

    With ``share_group`` it is an MQTT 5 shared subscription, so that several fleet
    processes split the load (the broker hands each message to one of them).
    """
    flt = f"{prefix}/dev/+/{kind.value}"
    return f"$share/{share_group}/{flt}" if share_group else flt


def parse_topic(prefix: str, name: str) -> tuple[str, Kind]:
    """Split a topic into (device id, kind); raise ContractError for anything else."""
    head = f"{prefix}/dev/"
    if not name.startswith(head):
        raise ContractError("bad-topic", f"topic {name!r} is not under {head!r}")
    device_id, _, rest = name[len(head) :].partition("/")
    try:
        kind = Kind(rest)
    except ValueError:
        raise ContractError("bad-topic", f"topic {name!r} has unknown kind {rest!r}") from None
    return validate_device_id(device_id), kind


def format_ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ContractError("bad-ts", f"ts {text!r} is not RFC 3339") from None
    if when.tzinfo is None:
        raise ContractError("bad-ts", f"ts {text!r} has no UTC offset")
    return when


def utcnow() -> datetime:
    """The default clock of every time-based agent component: now, timezone-aware, UTC."""
    return datetime.now(UTC)


def envelope(device_id: str, seq: int | None, when: datetime | None = None) -> dict[str, Any]:
    """The fields every payload starts with."""
    env: dict[str, Any] = {
        "schema": SCHEMA,
        "device_id": device_id,
        "ts": format_ts(when or utcnow()),
    }
    if seq is not None:
        env["seq"] = seq
    return env


def encode(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError("too-large", f"payload is {len(data)} bytes, limit {MAX_PAYLOAD_BYTES}")
    return data


def command_signing_bytes(command: dict[str, Any]) -> bytes:
    """The exact bytes the fleet signs and the agent verifies (Ed25519).

    Canonical JSON of the command without its ``sig``: sorted keys, no spaces, UTF-8.
    """
    unsigned = {k: v for k, v in command.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
