"""Remote actions on a device (reboot, restart a service, re-run the check, change the
report interval) and the audit.

The safety rules live in ``fleet.actions``: a refusal comes back with its reason in both
languages and the HTTP status it deserves (409 during a lesson or its lead window, 429
when rate limited), and the refused request is in the audit log too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.actions.outcomes import ActionRefused
from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, Services, ServicesDep
from fleet.api.routes.common import DeviceIdPath, IdPath, Text
from fleet.api.scope import Scope
from fleet.db.models import AuditEntry, Device

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["actions"])
ActionName = Literal["reboot", "restart-service", "run-check"]


class ActionIn(BaseModel):
    args: dict[str, Any] = Field(
        default_factory=dict, description="restart-service: {unit}; others: {}"
    )
    force: bool = Field(False, description="override the lesson/lead-window refusal")
    reason: str = Text(500, default="")


class IntervalIn(BaseModel):
    seconds: int = Field(ge=5, le=3600, description="telemetry interval")


class AuditAnswerOut(BaseModel):
    """One cmd/result as received; ``settled``: it decided the entry's outcome."""

    model_config = ConfigDict(from_attributes=True)
    received_at: datetime
    ok: bool
    reason: str
    message: str
    settled: bool


class AuditOut(BaseModel):
    """An action and its outcome, which never changes once final; ``answers`` holds every
    answer in arrival order, including late ones and refusals of replayed commands."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    device_id: str | None
    command_id: str | None
    args: dict[str, Any]
    forced: bool
    reason: str
    outcome: str
    detail: str
    reply: dict[str, Any] | None
    answered_at: datetime | None
    answers: list[AuditAnswerOut]


class RefusalOut(BaseModel):
    code: str
    message_zh: str
    message_en: str
    detail: str
    audit_id: int | None
    retry_after_s: float | None


_REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": RefusalOut, "description": text}
    for status, text in (
        (409, "refused: in a lesson or its lead window, or device disabled"),
        (429, "refused: rate limited"),
    )
}


def _request(
    session: Session,
    scope: Scope,
    services: Services,
    device_id: str,
    name: str,
    args: dict[str, Any],
    force: bool = False,
    reason: str = "",
) -> Any:
    """Hand the action to the service: the audit entry, or the refusal with its status."""
    scope.get(session, Device, device_id, "device")
    if services.actions is None:
        raise HTTPException(503, "远程操作服务未运行 / remote actions not running")
    try:
        entry = services.actions.request(
            scope.principal.username, device_id, name, args, force=force, reason=reason
        )
    except ActionRefused as refusal:
        out = RefusalOut(
            code=refusal.code.value,
            message_zh=refusal.message_zh,
            message_en=refusal.message_en,
            detail=refusal.detail,
            audit_id=refusal.audit_id,
            retry_after_s=refusal.retry_after_s,
        )
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(refusal.retry_after_s)))
        return JSONResponse(out.model_dump(), status_code=refusal.http_status, headers=headers)
    return AuditOut.model_validate(entry)


# Declared before the generic route, which would otherwise take its path.
@router.post(
    "/devices/{device_id}/actions/set-interval",
    status_code=202,
    response_model=AuditOut,
    responses=_REFUSALS,
)
def set_interval(
    device_id: DeviceIdPath,
    body: IntervalIn,
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
) -> Any:
    """Change how often the agent reports (not disruptive: allowed during lessons)."""
    return _request(session, scope, services, device_id, "set-interval", {"seconds": body.seconds})


@router.post(
    "/devices/{device_id}/actions/{name}",
    status_code=202,
    response_model=AuditOut,
    responses=_REFUSALS,
)
def request_action(
    device_id: DeviceIdPath,
    name: ActionName,
    body: ActionIn,
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
) -> Any:
    return _request(session, scope, services, device_id, name, body.args, body.force, body.reason)


@router.get("/audit")
def list_audit(
    session: DB,
    scope: CurrentScope,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if not scope.is_admin:
        query = query.where(AuditEntry.device_id.in_(scope.device_ids()))
    if device_id is not None:
        query = query.where(AuditEntry.device_id == device_id)
    return [AuditOut.model_validate(e) for e in session.scalars(query)]


@router.get("/audit/{audit_id}")
def get_audit(audit_id: IdPath, session: DB, scope: CurrentScope) -> AuditOut:
    query = select(AuditEntry).where(AuditEntry.id == audit_id)
    if not scope.is_admin:
        query = query.where(AuditEntry.device_id.in_(scope.device_ids()))
    entry = session.scalars(query).first()
    if entry is None:
        raise HTTPException(404, "审计记录不存在 / audit entry not found")
    return AuditOut.model_validate(entry)
