"""Which tickets each device has open, kept in memory so a healthy device costs nothing.

Almost every message says "all clear" for a device with nothing open; only an open or
pending ticket (or a resolved one whose fault is returning) can be changed by a clear
signal, so when the index lists none for the device the engine needs no database at all.
The engine updates the index with every change it makes; rows written by another fleet
process (a second consumer of the shared subscription) are picked up by :meth:`load`,
which the engine repeats every ``index_resync_s`` and after any failed transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from fleet.alerts.mute import OPEN_STATES
from fleet.db.models import Alert

__all__ = ["OpenIndex", "is_open", "open_condition"]


def open_condition() -> ColumnElement[bool]:
    """A ticket a clear signal can still change: open, pending, returning, or resolved by
    a person and waiting for the device's all-clear."""
    return (
        Alert.state.in_(OPEN_STATES)
        | Alert.pending_since.is_not(None)
        | Alert.awaiting_device.is_(True)
    )


def is_open(alert: Alert) -> bool:
    return alert.state in OPEN_STATES or alert.pending_since is not None or alert.awaiting_device


class OpenIndex:
    """Device id -> {fingerprint: rule} of its tickets matching :func:`open_condition`.

    Not thread-safe on its own: the engine uses it under its lock.
    """

    def __init__(self, resync_s: float) -> None:
        self._every = timedelta(seconds=resync_s)
        self._devices: dict[str, dict[str, str]] | None = None
        self._loaded_at: datetime | None = None

    @property
    def loaded(self) -> bool:
        return self._devices is not None

    def load(self, session: Session, now: datetime) -> None:
        devices: dict[str, dict[str, str]] = {}
        rows = session.execute(
            select(Alert.device_id, Alert.fingerprint, Alert.rule).where(open_condition())
        )
        for device_id, fingerprint, rule in rows:
            if device_id is not None:
                devices.setdefault(device_id, {})[fingerprint] = rule
        self._devices = devices
        self._loaded_at = now

    def invalidate(self) -> None:
        """A transaction failed: what we recorded may not be what the database holds."""
        self._devices = None

    def due(self, now: datetime) -> bool:
        return self._loaded_at is None or now - self._loaded_at >= self._every

    def of(self, device_id: str) -> Mapping[str, str]:
        if self._devices is None:
            raise RuntimeError("the open-ticket index is not loaded")
        return self._devices.get(device_id, {})

    def update(self, device_id: str | None, fingerprint: str, rule: str, now_open: bool) -> None:
        if self._devices is None or device_id is None:
            return
        if now_open:
            self._devices.setdefault(device_id, {})[fingerprint] = rule
            return
        tickets = self._devices.get(device_id)
        if tickets is not None:
            tickets.pop(fingerprint, None)
            if not tickets:
                del self._devices[device_id]

    def unmentioned(
        self, device_id: str, rules: Collection[str], seen: Collection[str]
    ) -> dict[str, str]:
        """The device's open tickets of ``rules`` that a message did not mention."""
        return {
            fingerprint: rule
            for fingerprint, rule in self.of(device_id).items()
            if rule in rules and fingerprint not in seen
        }
