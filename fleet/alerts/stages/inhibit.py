"""Inhibit: an offline device's other alerts say nothing new (Alertmanager's inhibition)."""

from __future__ import annotations

from sqlalchemy import select

from fleet.alerts.mute import OPEN_STATES, Inhibition
from fleet.alerts.stages.base import Tick
from fleet.db.models import Alert


def stage(tick: Tick) -> None:
    offline = tick.session.scalars(
        select(Alert.device_id).where(Alert.rule == "device_offline", Alert.state.in_(OPEN_STATES))
    )
    tick.mute(Inhibition(frozenset(d for d in offline if d is not None)))
