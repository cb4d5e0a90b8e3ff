"""What became of the notifications: each alert's deliveries, and the failed ones.

A delivery is listed with its alert's scope: whoever may see an alert sees how its
notifications fared; a notification about no alert (a fleet-wide one) is an admin's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB
from fleet.api.routes.common import IdPath, Instant
from fleet.db.models import Alert, Notification, NotificationStatus
from fleet.notify.delivery import deliveries, describe
from fleet.notify.digest import DIGEST

__all__ = ["DeliveryOut", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str  # firing / reminder / escalation / resolved
    channel: str
    target: str  # a webhook URL without its token
    state: str  # queued / retrying / merged / sent / failed
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    error: str | None  # the channel's last refusal; on a failure, why it failed for good
    digest_id: int | None  # the digest that carried (or carries) it
    fallback_of: int | None  # the delivery this one stands in for
    fallbacks: tuple[int, ...]  # the deliveries made in its place
    alert_ids: tuple[int, ...]


@router.get("/alerts/{alert_id}/deliveries")
def alert_deliveries(alert_id: IdPath, session: DB, scope: CurrentScope) -> list[DeliveryOut]:
    """Every notification about the alert, oldest first, with its fate."""
    alert = scope.get(session, Alert, alert_id, "alert")
    return [DeliveryOut.model_validate(d) for d in deliveries(session, alert)]


@router.get("/notifications")
def list_notifications(
    session: DB,
    scope: CurrentScope,
    status: Annotated[
        NotificationStatus, Query(description="failed: given up on, with the reason")
    ] = NotificationStatus.FAILED,
    since: Annotated[Instant | None, Query(description="created at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeliveryOut]:
    """Notifications by status, newest first (digests are listed by the notices they
    carried)."""
    visible = select(Alert.id).where(scope.alert())
    in_scope = (
        Notification.alert_id.is_(None) | Notification.alert_id.in_(visible)
        if scope.is_admin
        else Notification.alert_id.in_(visible)
    )
    query = select(Notification).where(
        Notification.status == status, Notification.kind != DIGEST, in_scope
    )
    if since is not None:
        query = query.where(Notification.created_at >= since)
    rows = session.scalars(
        query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    )
    return [DeliveryOut.model_validate(d) for d in describe(rows)]
