"""Whether a device is silent, judged on the device states every fleet process shares.

With several processes on one shared subscription each hears a part of every device's
telemetry, so its own ``last_seen`` of a device is only a lower bound.  The shared
``device_state.last_seen`` is the latest any process heard the device: each process's
state flush writes the later of its own and the stored one (``fleet.state._merged``),
so it trails the truth by at most one flush period of the slowest process.  A device
is silent when this process's view and the shared row both say so, the shared one with
that lag allowed for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import DeviceState

__all__ = ["ever_heard", "silent_devices"]

# Devices per query: far below any database's bound-parameter limit.
_CHUNK = 1_000


def silent_devices(sessions: SessionFactory, intervals: Mapping[str, float], now: datetime,
                   stale_intervals: float, lag: timedelta) -> list[str]:
    """Of the devices this process finds silent (device id -> reporting interval, s),
    those online and silent for ``stale_intervals`` intervals plus ``lag`` in the
    shared state."""
    ids = sorted(intervals)
    silent: list[str] = []
    with session_scope(sessions) as session:
        for start in range(0, len(ids), _CHUNK):
            rows = session.execute(
                select(DeviceState.device_id, DeviceState.last_seen).where(
                    DeviceState.device_id.in_(ids[start:start + _CHUNK]),
                    DeviceState.online.is_(True),
                    DeviceState.last_seen.is_not(None),
                )
            ).all()
            silent += [
                device_id for device_id, seen in rows
                if seen is not None
                and now - seen > timedelta(seconds=stale_intervals * intervals[device_id]) + lag
            ]
    return sorted(silent)


def ever_heard(sessions: SessionFactory, device_id: str) -> bool:
    """Whether any fleet process has heard the device (and flushed it)."""
    with session_scope(sessions) as session:
        return session.scalar(
            select(DeviceState.last_seen).where(DeviceState.device_id == device_id)
        ) is not None
