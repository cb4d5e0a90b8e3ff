"""Recurring maintenance windows (nights, weekends): the
mutes that come back by the calendar, next to the one-off silences of ``alerts``.

A window is scoped like a silence: a non-admin's must name only places they look after,
and other people's windows are answered with 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep, alert_service
from fleet.api.routes.common import IdPath, Text, invalid, zone_name
from fleet.api.routes.matchers import (
    MatcherKey,
    MatcherValue,
    matchers_in_scope,
    matchers_touch_scope,
    refuse_matchers,
)
from fleet.api.scope import not_found
from fleet.db.models import DEFAULT_TZ, MaintenanceWindow

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])
# ASCII digits only: a regex \d also takes other scripts' digits, which int() accepts.
LocalTime = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local HH:MM")
]
Weekday = Annotated[int, Field(ge=0, le=6)]


class WindowIn(BaseModel):
    name: str = Text(64, 1)
    weekdays: list[Weekday] = Field(
        min_length=1, max_length=7, description="0 = Monday … 6 = Sunday"
    )
    start_time: LocalTime
    end_time: LocalTime = Field(
        description="before start_time: the window wraps midnight and belongs to the day it "
        "starts on (Fri 22:00-06:00 covers Saturday 03:00); equal to start_time: whole days"
    )
    timezone: str = Text(64, 1, DEFAULT_TZ)
    matchers: dict[MatcherKey, MatcherValue] = Field(
        default_factory=dict,
        description="label -> value, all must match; none (admins only): every alert",
    )
    _tz = field_validator("timezone")(zone_name)


class WindowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    weekdays: list[int]
    start_time: str
    end_time: str
    timezone: str
    matchers: dict[str, Any]


@router.get("/maintenance-windows")
def list_windows(session: DB, scope: CurrentScope) -> list[WindowOut]:
    rows = session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.id))
    return [
        WindowOut.model_validate(w) for w in rows
        if matchers_touch_scope(session, scope, w.matchers)
    ]


@router.post("/maintenance-windows", status_code=201)
def create_window(
    body: WindowIn, session: DB, scope: CurrentScope, services: ServicesDep
) -> WindowOut:
    matchers: dict[str, str] = {str(k): v for k, v in body.matchers.items()}
    if not matchers_in_scope(session, scope, matchers):
        raise refuse_matchers("维护时段", "maintenance window")
    try:
        window_id = alert_service(services).add_maintenance_window(
            body.name, body.weekdays, body.start_time, body.end_time, matchers, body.timezone
        )
    except ValueError as exc:
        raise invalid(str(exc), "body") from None
    return WindowOut.model_validate(session.get(MaintenanceWindow, window_id))


@router.delete("/maintenance-windows/{window_id}", status_code=204)
def delete_window(window_id: IdPath, session: DB, scope: CurrentScope) -> None:
    window = session.get(MaintenanceWindow, window_id)
    if window is None or not matchers_touch_scope(session, scope, window.matchers):
        raise not_found("maintenance window")
    if not matchers_in_scope(session, scope, window.matchers):  # seen, not theirs to remove
        raise refuse_matchers("维护时段", "maintenance window")
    # The engine re-reads the windows on every tick, so the row is all there is to remove.
    session.delete(window)
