"""Validation of what arrives on the broker, before any sink sees it.

A message is accepted only when its topic parses, its device is a known, enabled device
of the inventory, it decodes against the typed contract (``agent.contract.decode_message``,
msgspec: size, JSON, schema 1 or 2, every field's type and range, the payload's device id
equals the topic's) and its ``ts`` lies within a window of the fleet's receive time.
Everything else is refused with a stable reason, counted, and logged at most once per
reason per ``log_every_s``.  Inside an accepted message, a part the decoder dropped (a
section of the wrong type or with an out-of-range value, a finding whose reason the
catalogue does not know) is counted apart (``dropped``): the rest of the message counts,
and the dropped part opens no ticket.  A v1 message reaches the sinks in v2's shape
(its ``schema`` still says 1).

Order of the checks: the device is judged from the topic alone, before a byte of the
payload is read.  The broker's ACL pins a device's credentials to its own topics, so the
topic is the one part of a message the fleet can trust, and a flood under unknown or
disabled ids costs a set lookup, never a JSON parse; it is also counted under its true
reason (``unknown-device``) whatever its payload looks like.

Time: a ``ts`` outside [now - ``ts_behind_s``, now + ``ts_ahead_s``] is not a broken
message but a suspicious one; it is counted apart (``suspicious``), because it is what a
poisoned or a nonsensical clock sends (a reset RTC's 1970, a year-3000 stamp), and it never
reaches the sinks.  The window ahead is a day (``IngestConfig.ts_ahead_s`` says why): the
fleet orders by session, seq and its own receive time, so a skewed but live agent keeps
flowing and its skew is alerted (``clock_skew``) instead.  Status is exempt: its order is
the connection's ``session``, and a retained birth is rightly as old as the connection.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from agent.contract import ContractError, Kind, decode_message, parse_topic, parse_ts, utcnow
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Device
from fleet.ingest.reasons import ReasonLog
from fleet.metrics import Sample

__all__ = ["Accepted", "Validator", "load_enabled_devices"]

log = logging.getLogger(__name__)

_FROM_DEVICES = frozenset(Kind) - {Kind.CMD}


@dataclass(frozen=True)
class Accepted:
    device_id: str
    kind: Kind
    payload: dict[str, Any]


def load_enabled_devices(sessions: SessionFactory) -> frozenset[str]:
    with session_scope(sessions) as session:
        return frozenset(session.scalars(select(Device.id).where(Device.enabled.is_(True))))


class Validator:
    def __init__(
        self,
        prefix: str,
        devices: Callable[[], Iterable[str]],
        log_every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
        ts_behind_s: float = 30 * 86400.0,
        ts_ahead_s: float = 86_400.0,
        on_unknown: Callable[[str, str], None] | None = None,
    ) -> None:
        self._prefix = prefix
        # Told (device id, topic) of every well-formed message refused as unknown-device,
        # so a refused agent is listed and alerted, not only logged.
        self._on_unknown = on_unknown
        self._load_devices = devices
        self._monotonic = monotonic
        self._refresh_s = refresh_s
        self._clock = clock
        self._behind = timedelta(seconds=ts_behind_s)
        self._ahead = timedelta(seconds=ts_ahead_s)
        self._known: frozenset[str] = frozenset(devices())
        self._loaded_at = monotonic()
        self.refusals = ReasonLog("refused", "syncclass_ingest_refused_total",
                                  "MQTT messages refused by validation, by reason",
                                  log, log_every_s, monotonic)
        self.suspicions = ReasonLog(
            "suspicious", "syncclass_ingest_suspicious_total",
            "Valid messages held back because their seq or ts is not believable, by reason",
            log, log_every_s, monotonic)
        self.drops = ReasonLog(
            "dropped part of a", "syncclass_ingest_dropped_total",
            "Parts of accepted messages dropped (a section, a finding), by reason",
            log, log_every_s, monotonic)

    @property
    def refused(self) -> Counter[str]:
        return self.refusals.counts

    @property
    def suspicious(self) -> Counter[str]:
        return self.suspicions.counts

    @property
    def dropped(self) -> Counter[str]:
        return self.drops.counts

    def reload_devices(self) -> None:
        """Re-read the set of enabled devices (call after inventory changes)."""
        self._known = frozenset(self._load_devices())
        self._loaded_at = self._monotonic()

    def _enabled(self, device_id: str) -> bool:
        # The inventory also changes behind this process (the API, the CLI, another fleet
        # process): re-read it every refresh_s, so a device enrolled a minute ago is heard
        # without a restart and a disabled one is refused, while a flood of spoofed ids
        # costs no more queries than silence would.
        if self._monotonic() - self._loaded_at >= self._refresh_s:
            try:
                self.reload_devices()
            except SQLAlchemyError:
                # The database is away: keep judging by the last known inventory.
                self._loaded_at = self._monotonic()
                log.warning("inventory reload failed; using the last known devices")
        return device_id in self._known

    def check(self, topic: str, data: bytes) -> Accepted | None:
        """The validated message, or None after counting and logging why not."""
        try:
            device_id, kind = parse_topic(self._prefix, topic)
            if kind not in _FROM_DEVICES:
                raise ContractError("bad-topic", f"{kind.value} is not sent by devices")
            if not self._enabled(device_id):
                if self._on_unknown is not None:
                    self._on_unknown(device_id, topic)
                raise ContractError("unknown-device", f"{device_id!r} is not an enabled device")
            decoded = decode_message(device_id, kind, data)
        except ContractError as exc:
            self.refusals.record(exc.reason, topic, exc.message)
            return None
        payload = decoded.payload
        if kind is not Kind.STATUS:
            doubt = self._doubt_ts(parse_ts(payload["ts"]))
            if doubt:
                self.suspicions.record(doubt, topic, f"ts {payload['ts']} (seq {payload['seq']})")
                return None
        for reason, what in decoded.dropped:
            self.drops.record(reason, topic, what)
        return Accepted(device_id, kind, payload)

    def _doubt_ts(self, ts: datetime) -> str:
        now = self._clock()
        if ts > now + self._ahead:
            return "ts-ahead"
        if ts < now - self._behind:
            return "ts-behind"
        return ""

    def samples(self) -> Iterable[Sample]:
        yield from self.refusals.samples()
        yield from self.suspicions.samples()
        yield from self.drops.samples()
