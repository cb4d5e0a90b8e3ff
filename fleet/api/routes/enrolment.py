"""Enrolment codes, the agents' enrol endpoint, revocation and credential rotation.

``POST /api/v1/enrol`` is the one route besides the bandwidth test that an agent calls,
without a person's token: the one-time code is its authority (``fleet.enrolment``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, EnrolService, Services, ServicesDep
from fleet.api.routes.actions import AuditOut
from fleet.api.routes.common import DeviceIdPath, IdPath, Text, require_writer
from fleet.db.base import session_scope
from fleet.db.models import Classroom, Device
from fleet.dynsec import DynsecError
from fleet.enrolment import EnrolRefused

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["enrolment"])


class CodeIn(BaseModel):
    replaces: str | None = Field(None, max_length=64,
                                 description="device id of the machine being replaced")
    ttl_hours: float | None = Field(None, gt=0, le=720)


class CodeOut(BaseModel):
    code: str = Field(description="shown once; type it on the mini-PC")
    classroom_id: int
    replaces: str | None
    expires_at: datetime
    command: str = Field(description="what to run on the mini-PC")


class EnrolIn(BaseModel):
    code: str = Text(32, min_length=1)
    password: str = Text(128, min_length=1)
    hostname: str = Text(128, default="")
    agent_version: str = Text(32, default="")


class MqttOut(BaseModel):
    url: str
    username: str
    prefix: str
    ca_pem: str | None


class EnrolOut(BaseModel):
    device_id: str
    classroom_id: int
    classroom: str
    school: str
    replaced: bool
    mqtt: MqttOut
    fleet_public_key: str
    session_floor: int = Field(description="a replacing machine numbers its MQTT sessions "
                               "above this, so its birth is the device's newest")


class RevokeIn(BaseModel):
    reason: str = Text(500, default="")


def _service(services: Services) -> EnrolService:
    if services.enrolment is None:
        # A fleet without [enrol] has no such feature, as if the route were not there.
        raise HTTPException(404, "本中心未启用设备注册（[enrol]）/ enrolment is not enabled "
                                 "on this fleet")
    return services.enrolment


def _refused(exc: EnrolRefused) -> HTTPException:
    return HTTPException(exc.status, {"code": exc.code, "message_zh": exc.message_zh,
                                      "message_en": exc.message_en})


def _broker_failed(exc: DynsecError) -> HTTPException:
    return HTTPException(502, f"消息代理未能执行 / the broker did not apply it: {exc}")


def _fleet_url(request: Request, services: Services) -> str:
    # [enrol] fleet_url, as the CLI prints it: behind a reverse proxy the request's own
    # URL may be the proxy's loopback address, which no mini-PC can reach.
    configured = _service(services).config.fleet_url.rstrip("/")
    return configured or str(request.base_url).rstrip("/")


def _code(session: DB, scope: CurrentScope, services: Services, classroom: Classroom,
          replaces: Device | None, ttl_hours: float | None, fleet_url: str) -> CodeOut:
    try:
        code, row = _service(services).create_code(
            session, classroom, scope.principal.username, replaces=replaces, ttl_hours=ttl_hours)
    except EnrolRefused as exc:
        raise _refused(exc) from None
    return CodeOut(code=code, classroom_id=classroom.id, replaces=row.device_id,
                   expires_at=row.expires_at,
                   command=f"syncclass-agent enrol {code} --fleet {fleet_url}")


@router.post("/classrooms/{classroom_id}/enrol-codes", status_code=201)
def create_enrol_code(classroom_id: IdPath, body: CodeIn, session: DB, scope: CurrentScope,
                      services: ServicesDep, request: Request) -> CodeOut:
    require_writer(scope)
    classroom = scope.get(session, Classroom, classroom_id, "classroom")
    replaces = (scope.get(session, Device, body.replaces, "device")
                if body.replaces is not None else None)
    return _code(session, scope, services, classroom, replaces, body.ttl_hours,
                 _fleet_url(request, services))


@router.post("/devices/{device_id}/rotate", status_code=201)
def rotate_device(device_id: DeviceIdPath, session: DB, scope: CurrentScope,
                  services: ServicesDep, request: Request) -> CodeOut:
    """A code that re-enrols this device under the same id: the agent makes new
    credentials, the old ones stop working when it is used."""
    require_writer(scope)
    device = scope.get(session, Device, device_id, "device")
    return _code(session, scope, services, device.classroom, device, None,
                 _fleet_url(request, services))


@router.post("/devices/{device_id}/revoke")
def revoke_device(device_id: DeviceIdPath, body: RevokeIn, session: DB, scope: CurrentScope,
                  services: ServicesDep) -> AuditOut:
    require_writer(scope)
    device = scope.get(session, Device, device_id, "device")
    try:
        entry = _service(services).revoke(session, device, scope.principal.username,
                                          body.reason)
    except DynsecError as exc:
        raise _broker_failed(exc) from None
    return AuditOut.model_validate(entry)


@router.post("/enrol", responses={403: {"description": "code unknown, used or expired"},
                                   429: {"description": "too many wrong codes lately"}})
def enrol(body: EnrolIn, session: DB, services: ServicesDep, request: Request) -> EnrolOut:
    service = _service(services)
    try:
        done = service.enrol(session, body.code, body.password, body.hostname)
    except EnrolRefused as exc:
        if exc.status in (400, 403):  # a wrong guess counts; a throttled one does not
            session.rollback()  # the failed claim's write lock (SQLite) goes first
            with session_scope(services.sessions) as audit:
                service.record_failure(audit, exc, request.client.host if request.client else "")
        raise _refused(exc) from None
    except DynsecError as exc:
        raise _broker_failed(exc) from None
    return EnrolOut(
        device_id=done.device_id, classroom_id=done.classroom_id, classroom=done.classroom,
        school=done.school, replaced=done.replaced,
        mqtt=MqttOut(url=done.mqtt_url, username=done.mqtt_username, prefix=done.mqtt_prefix,
                     ca_pem=done.ca_pem),
        fleet_public_key=done.fleet_public_key, session_floor=done.session_floor,
    )
