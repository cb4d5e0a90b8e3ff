"""Devices (the agents' mini-PCs) with their latest health.

Health is derived from the same open alerts the alert list shows: a device is "ok" only
while none of its tickets is firing or acknowledged, and its problems are those tickets
(one per fault, in the alert rules' words), so the device list never says "正常 OK" next
to a firing critical alert.  Pending faults (inside their up-delay) are not yet problems.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from agent.contract import DEVICE_ID_RE
from fleet.alerts.signal import rule_info
from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, LiveState, Services, ServicesDep
from fleet.api.routes.common import (
    DeviceIdPath,
    RefId,
    RefQuery,
    Text,
    apply_patch,
    flush_or_409,
    require_writer,
)
from fleet.db.models import Alert, AlertState, Classroom, Device, DeviceState

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])


class DeviceIn(BaseModel):
    id: str = Field(pattern=DEVICE_ID_RE.pattern, description="the agent's MQTT identity")
    classroom_id: RefId
    address: str = Text(256, default="")
    enabled: bool = True
    note: str = Text(256, default="")


class DevicePatch(BaseModel):
    classroom_id: RefId | None = None
    address: str | None = Text(256, default=None)
    enabled: bool | None = None
    note: str | None = Text(256, default=None)


class Problem(BaseModel):
    """One open alert of the device."""

    section: str  # the entity kind ("camera", "target"...), "" for the device itself
    reason: str  # the alert rule
    message: str
    alert_id: int
    severity: str


class DeviceHealthOut(BaseModel):
    online: bool
    last_seen: datetime | None
    agent_version: str
    telemetry_at: datetime | None  # fleet time the latest telemetry arrived
    status_at: datetime | None  # fleet time it was learnt online or offline (Last Will)
    # The worst open alert: "critical", "warning", else "ok".
    status: str
    # The device's firing or acknowledged alerts, worst first.
    problems: list[Problem]
    telemetry: dict[str, Any]


class DeviceOut(BaseModel):
    id: str
    classroom_id: int
    classroom: str
    school_id: int
    school: str
    address: str
    enabled: bool
    note: str
    health: DeviceHealthOut | None


_SEVERITY_ORDER = {"critical": 0, "warning": 1}


def _problems(session: Session, ids: list[str]) -> dict[str, list[Problem]]:
    """Each device's firing or acknowledged alerts, worst first."""
    found: dict[str, list[Problem]] = {}
    query = (
        select(Alert)
        .where(Alert.device_id.in_(ids),
               Alert.state.in_((AlertState.FIRING, AlertState.ACKNOWLEDGED)))
        .order_by(Alert.id)
    )
    for alert in session.scalars(query):
        info = rule_info(alert.rule)
        own = str((alert.details or {}).get("message_zh") or "")
        found.setdefault(alert.device_id or "", []).append(Problem(
            section=alert.entity.partition(":")[0],
            reason=alert.rule,
            message=f"{info.title_zh} {info.title_en}" + (f"：{own}" if own else ""),
            alert_id=alert.id,
            severity=alert.severity,
        ))
    for problems in found.values():
        problems.sort(key=lambda p: _SEVERITY_ORDER.get(p.severity, 2))
    return found


def _health(
    state: LiveState | None, enabled: bool, problems: list[Problem]
) -> DeviceHealthOut | None:
    if state is None:
        return None
    return DeviceHealthOut(
        # The ingest drops a disabled device's messages, its Last Will on a revoke too, so
        # its last state may still say online: a disabled device is never shown online.
        online=state.online and enabled,
        last_seen=state.last_seen,
        agent_version=state.agent_version,
        telemetry_at=state.telemetry_at,
        status_at=state.status_at,
        status=problems[0].severity if problems else "ok",
        problems=problems,
        telemetry=dict(state.telemetry or {}),
    )


def _states(session: Session, services: Services, ids: list[str]) -> dict[str, LiveState]:
    """The ingest's live state of each device, else the last one flushed to the table."""
    states: dict[str, LiveState] = {}
    if services.states is not None:
        for device_id in ids:
            live = services.states.get(device_id)
            if live is not None:
                states[device_id] = live
    missing = [i for i in ids if i not in states]
    if missing:
        query = select(DeviceState).where(DeviceState.device_id.in_(missing))
        states.update((row.device_id, row) for row in session.scalars(query))
    return states


def devices_out(session: Session, services: Services, devices: list[Device]) -> list[DeviceOut]:
    ids = [d.id for d in devices]
    states = _states(session, services, ids)
    problems = _problems(session, ids)
    return [
        DeviceOut(
            id=device.id,
            classroom_id=device.classroom_id,
            classroom=device.classroom.name,
            school_id=device.classroom.school_id,
            school=device.classroom.school.name,
            address=device.address,
            enabled=device.enabled,
            note=device.note,
            health=_health(states.get(device.id), device.enabled,
                           problems.get(device.id, [])),
        )
        for device in devices
    ]


def device_out(session: Session, services: Services, device: Device) -> DeviceOut:
    return devices_out(session, services, [device])[0]


@router.get("")
def list_devices(
    request: Request,
    response: Response,
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    classroom_id: RefQuery = None,
    school_id: RefQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="devices per page")] = 500,
    after: Annotated[str | None, Query(max_length=64,
                                       description="the last device id of the page before")] = None,
) -> list[DeviceOut]:
    """Devices by id, a page at a time: a province's 20,000 in one answer took seconds.
    A full page carries ``Link: <…?after=…>; rel="next"`` (RFC 8288) to the next one."""
    query = (
        select(Device)
        .join(Classroom)
        .where(scope.device())
        .order_by(Device.id)
        .limit(limit)
        .options(joinedload(Device.classroom).joinedload(Classroom.school))
    )
    if classroom_id is not None:
        query = query.where(Device.classroom_id == classroom_id)
    if school_id is not None:
        query = query.where(Classroom.school_id == school_id)
    if after is not None:
        query = query.where(Device.id > after)
    devices = list(session.scalars(query))
    if len(devices) == limit:
        params = {**request.query_params, "after": devices[-1].id, "limit": str(limit)}
        response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return devices_out(session, services, devices)


class UnknownDeviceOut(BaseModel):
    """An agent the broker let in whose messages the inventory refuses."""

    model_config = ConfigDict(from_attributes=True)
    device_id: str
    disabled: bool  # in the inventory but disabled; else not in it at all
    classroom_id: int | None
    first_seen: datetime
    last_seen: datetime
    messages: int
    topic: str


@router.get("/unknown")
def list_unknown_devices(
    session: DB, scope: CurrentScope, services: ServicesDep
) -> list[UnknownDeviceOut]:
    """Devices refused as unknown or disabled, heard recently (one entry per device).
    An unknown one has no place: admins only; a disabled one: who sees its classroom."""
    if services.strangers is None:
        return []
    found = [UnknownDeviceOut.model_validate(s) for s in services.strangers()]
    if scope.is_admin:
        return found
    rooms = set(session.scalars(scope.classroom_ids()))
    return [s for s in found if s.classroom_id in rooms]


@router.get("/{device_id}")
def get_device(
    device_id: DeviceIdPath, session: DB, scope: CurrentScope, services: ServicesDep
) -> DeviceOut:
    return device_out(session, services, scope.get(session, Device, device_id, "device"))


@router.post("", status_code=201)
def create_device(
    body: DeviceIn, session: DB, scope: CurrentScope, services: ServicesDep
) -> DeviceOut:
    require_writer(scope)
    scope.get(session, Classroom, body.classroom_id, "classroom")
    if session.get(Device, body.id) is not None:
        raise HTTPException(409, f"设备 {body.id} 已存在 / device already exists")
    device = Device(**body.model_dump())
    session.add(device)
    flush_or_409(session, "device")
    session.refresh(device)
    return device_out(session, services, device)


@router.patch("/{device_id}")
def update_device(
    device_id: DeviceIdPath,
    body: DevicePatch,
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
) -> DeviceOut:
    require_writer(scope)
    device = scope.get(session, Device, device_id, "device")
    if body.classroom_id is not None:
        scope.get(session, Classroom, body.classroom_id, "classroom")
    apply_patch(device, body.model_dump(exclude_unset=True, exclude_none=True))
    flush_or_409(session, "device")
    session.refresh(device)
    return device_out(session, services, device)


@router.delete("/{device_id}", status_code=204)
def delete_device(device_id: DeviceIdPath, session: DB, scope: CurrentScope) -> None:
    require_writer(scope)
    device = scope.get(session, Device, device_id, "device")
    state = session.get(DeviceState, device.id)
    if state is not None:
        session.delete(state)
    session.delete(device)
    flush_or_409(session, "device")
