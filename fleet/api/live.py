"""What changed since the last look, for the page's live updates (server-sent events).

The cursor is read from the database, not from in-process hooks: the ingest, the alert
engine, the check scheduler and the outbox may run in another fleet process than the one
serving a page, and each of them leaves a row behind (an alert event, a check run, a
device's status, a notification).  One poll per process, whatever the number of open
pages, costs a few indexed ``max()`` reads and, only when something moved, the new rows.
Each page is then told only about what lies in its person's scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import uvicorn
from anyio import to_thread
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fleet.api.scope import Scope
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert, AlertEvent, CheckRun, DeviceState, Notification

__all__ = ["Change", "ChangeFeed", "Cursor", "Server", "read_changes"]

log = logging.getLogger(__name__)

# An alert event of these kinds is news a person may want a notification about.
NEWS = frozenset({"fired", "reopened", "escalated"})
# Ids come from a sequence when a row is inserted, but transactions commit in any order:
# an event can become visible after one with a higher id.  Each poll looks this many ids
# below the highest and skips those it already told.
LOOKBACK = 500


@dataclass(frozen=True)
class Cursor:
    alert_event: int = 0
    # The alert events above ``alert_event - LOOKBACK`` already told.
    told: frozenset[int] = frozenset()
    check_run: int = 0
    check_answered: datetime | None = None
    status_at: datetime | None = None
    notification: int = 0
    notification_sent: datetime | None = None


@dataclass(frozen=True)
class AlertChange:
    id: int
    kind: str
    severity: str
    state: str
    classroom_id: int | None
    device_id: str | None
    summary_zh: str
    summary_en: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": self.severity,
                "state": self.state, "summary_zh": self.summary_zh,
                "summary_en": self.summary_en, "news": self.kind in NEWS}


@dataclass(frozen=True)
class Change:
    """One poll's worth of changes, fleet-wide; ``for_scope`` cuts it to one person's."""

    alerts: tuple[AlertChange, ...] = ()
    devices: frozenset[str] = frozenset()
    # Alerts whose notifications moved (queued, sent, failed).
    delivered: frozenset[int] = frozenset()

    def for_scope(self, session: Session, scope: Scope) -> dict[str, Any] | None:
        if scope.is_admin:
            alerts, devices = list(self.alerts), sorted(self.devices)
            delivered = sorted(self.delivered)
        else:
            rooms = set(session.scalars(scope.classroom_ids()))
            own = set(session.scalars(scope.device_ids()))
            alerts = [a for a in self.alerts if a.classroom_id in rooms or a.device_id in own]
            devices = sorted(self.devices & own)
            delivered = sorted(session.scalars(
                select(Alert.id).where(Alert.id.in_(self.delivered), scope.alert())))
        if not (alerts or devices or delivered):
            return None
        return {"alerts": [a.to_json() for a in alerts], "devices": devices,
                "delivered": delivered}


def _events(session: Session, ids: list[int]) -> list[Any]:
    return list(session.execute(
        select(AlertEvent.alert_id, AlertEvent.kind, Alert.severity, Alert.state,
               Alert.classroom_id, Alert.device_id, Alert.summary_zh, Alert.summary_en)
        .join(Alert, Alert.id == AlertEvent.alert_id)
        .where(AlertEvent.id.in_(ids))
        .order_by(AlertEvent.id)
    ).all()) if ids else []


def _event_ids_above(session: Session, floor: int) -> set[int]:
    return set(session.scalars(select(AlertEvent.id).where(AlertEvent.id > floor)))


def _latest(session: Session) -> Cursor:
    """Where the poll starts: everything already in the database counts as told."""
    cursor = _marks(session)
    return replace(cursor, told=frozenset(
        _event_ids_above(session, cursor.alert_event - LOOKBACK)))


def _marks(session: Session) -> Cursor:
    def one(query: Select[Any]) -> Any:
        return session.execute(query).scalar()

    return Cursor(
        alert_event=one(select(func.max(AlertEvent.id))) or 0,
        check_run=one(select(func.max(CheckRun.id))) or 0,
        check_answered=one(select(func.max(CheckRun.answered_at))),
        status_at=one(select(func.max(DeviceState.status_at))),
        notification=one(select(func.max(Notification.id))) or 0,
        notification_sent=one(select(func.max(Notification.sent_at))),
    )


def _after(column: Any, mark: datetime | None) -> Any:
    return column.is_not(None) if mark is None else column > mark


def read_changes(session: Session, since: Cursor) -> tuple[Cursor, Change | None]:
    """The newest cursor, and what changed after ``since`` (None: nothing)."""
    marks = _marks(session)
    new = sorted(_event_ids_above(session, since.alert_event - LOOKBACK) - since.told)
    floor = marks.alert_event - LOOKBACK
    now = replace(marks, told=frozenset(i for i in since.told.union(new) if i > floor))
    if not new and marks == replace(since, told=frozenset()):
        return now, None
    alerts = tuple(AlertChange(r[0], r[1], r[2], str(r[3]), r[4], r[5], r[6], r[7])
                   for r in _events(session, new))
    devices = set(session.scalars(select(CheckRun.device_id).where(or_(
        CheckRun.id > since.check_run, _after(CheckRun.answered_at, since.check_answered)))))
    devices |= set(session.scalars(select(DeviceState.device_id).where(
        _after(DeviceState.status_at, since.status_at))))
    delivered = set(session.scalars(select(Notification.alert_id).where(
        Notification.alert_id.is_not(None),
        or_(Notification.id > since.notification,
            _after(Notification.sent_at, since.notification_sent)))))
    return now, Change(alerts, frozenset(devices), frozenset(i for i in delivered if i))


@dataclass
class ChangeFeed:
    """Polls the database once per ``interval`` while any page listens, and hands each
    listener every change (an asyncio queue each: the poll never waits for a slow page)."""

    sessions: SessionFactory
    interval: float = 1.0
    # None in a queue: the server is stopping, the stream ends (the page reconnects).
    _listeners: set[asyncio.Queue[Change | None]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def _poll(self, cursor: Cursor) -> None:
        while self._listeners:
            await asyncio.sleep(self.interval)
            try:
                cursor, change = await to_thread.run_sync(self._read, cursor)
            except SQLAlchemyError as exc:
                # The database is away: the pages stay open and hear what changed
                # meanwhile once it is back (the cursor has not moved).
                log.warning("live updates: cannot read the changes: %s", exc)
                continue
            if change is not None:
                for queue in self._listeners:
                    queue.put_nowait(change)

    def _read_latest(self) -> Cursor:
        with session_scope(self.sessions) as session:
            return _latest(session)

    def _read(self, cursor: Cursor) -> tuple[Cursor, Change | None]:
        with session_scope(self.sessions) as session:
            return read_changes(session, cursor)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Change | None]]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        if self._task is None or self._task.done():
            # Read before listening starts: a change made once the page is told it is
            # live is never taken for the starting point.
            cursor = await to_thread.run_sync(self._read_latest)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._poll(cursor))
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    @property
    def listening(self) -> int:
        return len(self._listeners)

    def close(self) -> None:
        """Ends every stream; called in the server's loop as it stops."""
        for queue in self._listeners:
            queue.put_nowait(None)


class Server(uvicorn.Server):
    """Ends the pages' streams as it stops: they never end by themselves, and uvicorn
    waits for requests in flight (the pages reconnect once the fleet is back)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.config.app, "state", None)
        feed: ChangeFeed | None = getattr(state, "change_feed", None)
        if feed is not None:
            feed.close()
        await super().shutdown(sockets)
