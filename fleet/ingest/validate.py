"""Validation of what arrives on the broker, before any sink sees it.

A message is accepted only when its topic parses, it fits the size limit, it decodes
against ``agent.contract`` (schema, fields, the payload's device id equals the topic's) and
its device is a known, enabled device of the inventory.  Everything else is refused with a
stable reason, counted, and logged at most once per reason per ``log_every_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from agent.contract import ContractError, Kind, decode, parse_topic
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Device
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
        on_unknown: Callable[[str, str], None] | None = None,
    ) -> None:
        self._prefix = prefix
        # Told (device id, topic) of every well-formed message refused as unknown-device,
        # so a refused agent is listed and alerted, not only logged.
        self._on_unknown = on_unknown
        self._load_devices = devices
        self._monotonic = monotonic
        self._refresh_s = refresh_s
        self._known: frozenset[str] = frozenset(devices())
        self._loaded_at = monotonic()
        self._log_every = log_every_s
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()
        self.refused: Counter[str] = Counter()

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
        """The validated message, or None after counting and logging the refusal."""
        try:
            device_id, kind = parse_topic(self._prefix, topic)
            if kind not in _FROM_DEVICES:
                raise ContractError("bad-topic", f"{kind.value} is not sent by devices")
            payload = decode(device_id, kind, data)
            if not self._enabled(device_id):
                if self._on_unknown is not None:
                    self._on_unknown(device_id, topic)
                raise ContractError("unknown-device", f"{device_id!r} is not an enabled device")
        except ContractError as exc:
            self._refuse(topic, exc)
            return None
        return Accepted(device_id, kind, payload)

    def _refuse(self, topic: str, exc: ContractError) -> None:
        with self._lock:
            self.refused[exc.reason] += 1
            now = self._monotonic()
            last = self._last_log.get(exc.reason)
            if last is not None and now - last < self._log_every:
                return
            self._last_log[exc.reason] = now
            total = self.refused[exc.reason]
        log.warning("refused message on %r: %s (%d so far with this reason)", topic, exc, total)

    def samples(self) -> Iterable[Sample]:
        for reason, count in sorted(self.refused.items()):
            yield Sample(
                "syncclass_ingest_refused_total",
                "MQTT messages refused by validation, by reason",
                count,
                labels={"reason": reason},
            )
