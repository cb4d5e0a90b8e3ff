"""Alerts (current state queryable, acknowledged or resolved by hand with a comment) and
silences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.alerts.engine import AlertNotFound, AlertStateError, select_alerts
from fleet.api.alert_filters import alert_filters
from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep, alert_service
from fleet.api.routes.common import IdPath, Instant, RefQuery, Text, invalid
from fleet.api.routes.deliveries import DeliveryOut
from fleet.api.routes.matchers import MatcherKey, MatcherValue, matchers_in_scope, refuse_matchers
from fleet.api.scope import Scope, not_found
from fleet.db.models import Alert, AlertState, Silence
from fleet.notify.delivery import deliveries

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])

Severity = Literal["critical", "warning", "info"]


class AlertEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    kind: str
    actor: str
    text: str


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    rule: str
    severity: str
    state: AlertState
    classroom_id: int | None
    device_id: str | None
    lesson_id: int | None
    entity: str
    labels: dict[str, Any]
    summary_zh: str
    summary_en: str
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_comment: str | None
    escalation_level: int
    reopen_count: int
    suppressed_by: str | None
    # Resolved by a person while the device still reported the fault: its further reports
    # are noted without reopening it, until the device reports it gone.
    awaiting_device: bool = Field(
        description="resolved by hand while still reported: waiting for the device's all-clear"
    )


class AlertDetailOut(AlertOut):
    events: list[AlertEventOut]
    deliveries: list[DeliveryOut] = Field(
        default_factory=list, description="what became of each notification about it"
    )


def _detail(session: Session, alert: Alert) -> AlertDetailOut:
    out = AlertDetailOut.model_validate(alert)
    out.deliveries = [DeliveryOut.model_validate(d) for d in deliveries(session, alert)]
    return out


class CommentIn(BaseModel):
    comment: str = Text(1000, 1)


class SilenceIn(BaseModel):
    matchers: dict[MatcherKey, MatcherValue] = Field(
        min_length=1, description="label -> value; all must match (equality)"
    )
    starts_at: Instant
    ends_at: Instant
    comment: str = Text(1000, 1)


class SilenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    matchers: dict[str, Any]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str


@router.get("/alerts")
def list_alerts(
    session: DB,
    scope: CurrentScope,
    state: Annotated[list[AlertState] | None, Query(description="default: open ones")] = None,
    classroom_id: RefQuery = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    county_id: RefQuery = None,
    school_id: RefQuery = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description=(
        "words that must all appear in the summary, device, school or classroom name"))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertOut]:
    query = select_alerts(
        state or [AlertState.FIRING, AlertState.ACKNOWLEDGED],
        classroom_ids=None if classroom_id is None else [classroom_id],
        device_id=device_id,
        limit=limit,
    ).where(scope.alert(), alert_filters(county_id, school_id, severity or (), q))
    return [AlertOut.model_validate(a) for a in session.scalars(query)]


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: IdPath, session: DB, scope: CurrentScope) -> AlertDetailOut:
    return _detail(session, scope.get(session, Alert, alert_id, "alert"))


def _change(
    session: Session, scope: Scope, alert_id: int, change: Callable[[], None], refused: str
) -> AlertDetailOut:
    """Apply an engine transition to an alert in scope and answer with its new state."""
    scope.get(session, Alert, alert_id, "alert")
    try:
        change()
    except AlertStateError as exc:
        raise HTTPException(409, f"{refused}: {exc}") from None
    except AlertNotFound:
        raise not_found("alert") from None
    except ValueError as exc:
        raise invalid(str(exc), "body", "comment") from None
    session.expire_all()
    return _detail(session, scope.get(session, Alert, alert_id, "alert"))


@router.post(
    "/alerts/{alert_id}/ack",
    responses={409: {"description": "not firing: resolved, or still inside its up-delay"}},
)
def acknowledge(
    alert_id: IdPath, body: CommentIn, session: DB, scope: CurrentScope, services: ServicesDep
) -> AlertDetailOut:
    actor = scope.principal.username
    return _change(
        session,
        scope,
        alert_id,
        lambda: alert_service(services).acknowledge(alert_id, actor, body.comment),
        "告警当前状态不能确认 / cannot acknowledge",
    )


@router.post("/alerts/{alert_id}/resolve", responses={409: {"description": "already resolved"}})
def resolve(
    alert_id: IdPath, body: CommentIn, session: DB, scope: CurrentScope, services: ServicesDep
) -> AlertDetailOut:
    """Close a ticket by hand (say, the device was taken away for repair).  A fault the
    device still reports stays resolved, ``awaiting_device``: its further reports neither
    reopen it nor send anything, and the ticket keeps its "since"; the device's all-clear
    confirms it."""
    actor = scope.principal.username
    return _change(
        session,
        scope,
        alert_id,
        lambda: alert_service(services).resolve_manually(alert_id, actor, body.comment),
        "告警不能解决 / cannot resolve",
    )


# ---------------------------------------------------------------- silences


@router.get("/silences")
def list_silences(
    session: DB, scope: CurrentScope, services: ServicesDep, include_expired: bool = False
) -> list[SilenceOut]:
    query = select(Silence).order_by(Silence.starts_at)
    if not include_expired:
        query = query.where(Silence.ends_at > services.clock())
    rows = [s for s in session.scalars(query) if matchers_in_scope(session, scope, s.matchers)]
    return [SilenceOut.model_validate(s) for s in rows]


@router.post("/silences", status_code=201)
def create_silence(
    body: SilenceIn, session: DB, scope: CurrentScope, services: ServicesDep
) -> SilenceOut:
    if body.ends_at <= body.starts_at:
        raise invalid("结束时间须晚于开始时间 / ends_at must be after starts_at", "body", "ends_at")
    matchers: dict[str, str] = {str(k): v for k, v in body.matchers.items()}
    if not matchers_in_scope(session, scope, matchers):
        raise refuse_matchers("静默", "silence")
    try:
        silence_id = alert_service(services).add_silence(
            matchers, body.starts_at, body.ends_at, scope.principal.username, body.comment
        )
    except ValueError as exc:
        raise invalid(str(exc), "body", "matchers") from None
    return SilenceOut.model_validate(session.get(Silence, silence_id))


class AlertSilenceIn(BaseModel):
    minutes: int = Field(ge=5, le=7 * 24 * 60, description="from now (the fleet's clock)")
    comment: str = Text(1000, 1)


def alert_matchers(alert: Alert) -> dict[str, str]:
    """The alert's rule at its device (or classroom): this fault here, nothing else."""
    if alert.device_id is not None:
        return {"rule": alert.rule, "device_id": alert.device_id}
    if alert.classroom_id is not None:
        return {"rule": alert.rule, "classroom_id": str(alert.classroom_id)}
    return {"rule": alert.rule}  # fleet-wide: an admin's to silence


@router.post(
    "/alerts/{alert_id}/silence",
    status_code=201,
    responses={403: {"description": "a fleet-wide alert: only an admin may silence it"}},
)
def silence_alert(
    alert_id: IdPath, body: AlertSilenceIn, session: DB, scope: CurrentScope,
    services: ServicesDep,
) -> SilenceOut:
    """A silence of this alert's rule at its device (or classroom) for ``minutes`` from
    now: its notifications are held back until then; the alert itself stays listed."""
    alert = scope.get(session, Alert, alert_id, "alert")
    matchers = alert_matchers(alert)
    if not matchers_in_scope(session, scope, matchers):
        raise refuse_matchers("静默", "silence")
    now = services.clock()
    silence_id = alert_service(services).add_silence(
        matchers, now, now + timedelta(minutes=body.minutes), scope.principal.username,
        f"告警 alert #{alert_id}: {body.comment}",
    )
    return SilenceOut.model_validate(session.get(Silence, silence_id))


@router.delete("/silences/{silence_id}", status_code=204)
def delete_silence(
    silence_id: IdPath, session: DB, scope: CurrentScope, services: ServicesDep
) -> None:
    silence = session.get(Silence, silence_id)
    if silence is None or not matchers_in_scope(session, scope, silence.matchers):
        raise not_found("silence")
    try:
        alert_service(services).delete_silence(silence_id)
    except AlertNotFound:
        raise not_found("silence") from None
