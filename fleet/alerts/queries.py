"""Reading alerts: the one statement the engine, the API and the page narrow."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select

from fleet.db.models import Alert, AlertState

__all__ = ["select_alerts"]


def select_alerts(
    state: AlertState | Iterable[AlertState] | None = None,
    classroom_ids: Iterable[int] | None = None,
    device_id: str | None = None,
    rule: str | None = None,
    include_pending: bool = False,
    limit: int = 500,
) -> Select[Alert]:
    """Alerts, newest first; pending ones (inside their up-delay) only when asked.  The
    API narrows the same statement to what a person may see."""
    query = select(Alert).order_by(Alert.started_at.desc(), Alert.id.desc()).limit(limit)
    if isinstance(state, AlertState):
        query = query.where(Alert.state == state)
    elif state is not None:
        query = query.where(Alert.state.in_(list(state)))
    elif not include_pending:
        query = query.where(Alert.state != AlertState.PENDING)
    if classroom_ids is not None:
        query = query.where(Alert.classroom_id.in_(list(classroom_ids)))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if rule is not None:
        query = query.where(Alert.rule == rule)
    return query
