"""Devices (the agents' mini-PCs) with their latest health."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, LiveState, Services, get_services
from fleet.api.routes.common import RefId, RefQuery, Text, apply_patch, flush_or_409, require_writer
from fleet.db.models import Classroom, Device, DeviceState

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])

DeviceIdPath = Annotated[str, Path(max_length=64)]
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # agent.contract.DEVICE_ID_RE


class DeviceIn(BaseModel):
    id: str = Field(pattern=_ID_PATTERN, description="the agent's MQTT identity")
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
    section: str
    reason: str
    message: str


class DeviceHealthOut(BaseModel):
    online: bool
    last_seen: datetime | None
    agent_version: str
    telemetry_at: datetime | None
    # Sections reporting not ok, in the agent's words (camera missing, loss high...).
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


def _problems(sections: dict[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    for name, data in sorted(sections.items()):
        if not isinstance(data, dict) or data.get("ok", True):
            continue
        found.append(
            Problem(
                section=name,
                reason=str(data.get("reason", "")),
                message=str(data.get("message", "")),
            )
        )
    return found


def _health(state: LiveState | None) -> DeviceHealthOut | None:
    if state is None:
        return None
    telemetry = dict(state.telemetry or {})
    sections = telemetry.get("sections", telemetry)
    return DeviceHealthOut(
        online=state.online,
        last_seen=state.last_seen,
        agent_version=state.agent_version,
        telemetry_at=state.telemetry_at,
        problems=_problems(sections if isinstance(sections, dict) else {}),
        telemetry=telemetry,
    )


def device_out(session: Session, services: Services, device: Device) -> DeviceOut:
    live = services.states.get(device.id) if services.states is not None else None
    state: LiveState | None = live if live is not None else session.get(DeviceState, device.id)
    return DeviceOut(
        id=device.id,
        classroom_id=device.classroom_id,
        classroom=device.classroom.name,
        school_id=device.classroom.school_id,
        school=device.classroom.school.name,
        address=device.address,
        enabled=device.enabled,
        note=device.note,
        health=_health(state),
    )


ServicesDep = Annotated[Services, Depends(get_services)]


@router.get("")
def list_devices(
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    classroom_id: RefQuery = None,
    school_id: RefQuery = None,
) -> list[DeviceOut]:
    query = select(Device).join(Classroom).where(scope.device()).order_by(Device.id)
    if classroom_id is not None:
        query = query.where(Device.classroom_id == classroom_id)
    if school_id is not None:
        query = query.where(Classroom.school_id == school_id)
    return [device_out(session, services, d) for d in session.scalars(query)]


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
