"""Silence: one-off silences a person set on matching labels."""

from __future__ import annotations

from sqlalchemy import select

from fleet.alerts.mute import Silences
from fleet.alerts.stages.base import Tick
from fleet.db.models import Silence


def stage(tick: Tick) -> None:
    now = tick.now
    rows = tick.session.scalars(
        select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now)
    )
    tick.mute(Silences(tuple(rows)))
