"""Live updates for the page: a server-sent event stream of what changed in the person's
scope (``fleet.api.live``).  The page then re-reads what it shows through the same
scoped API, so an event never carries more than its alert's id, state and summary."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, ServicesDep
from fleet.api.live import Change, ChangeFeed
from fleet.api.scope import Scope
from fleet.db.base import SessionFactory, session_scope

__all__ = ["LIFETIME_S", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["live"])

HEARTBEAT_S = 15.0
# A stream ends after this long and the browser reconnects at once: the session cookie is
# judged again, so a logged-out or expired session stops hearing within this time.
LIFETIME_S = 120.0


def _frame(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _feed(request: Request, sessions: SessionFactory) -> ChangeFeed:
    feed: ChangeFeed | None = getattr(request.app.state, "change_feed", None)
    if feed is None:
        feed = request.app.state.change_feed = ChangeFeed(sessions)
    return feed


def _scoped(sessions: SessionFactory, change: Change, scope: Scope) -> dict[str, Any] | None:
    with session_scope(sessions) as session:
        return change.for_scope(session, scope)


async def _stream(feed: ChangeFeed, sessions: SessionFactory, scope: Scope
                  ) -> AsyncIterator[str]:
    ends = time.monotonic() + LIFETIME_S
    async with feed.listen() as queue:
        yield "retry: 2000\n\n" + _frame("hello", {"user": scope.principal.username})
        while (left := ends - time.monotonic()) > 0:
            try:
                change = await asyncio.wait_for(queue.get(), min(HEARTBEAT_S, left))
            except TimeoutError:
                yield ": ping\n\n"  # keeps proxies from closing an idle stream
                continue
            if change is None:
                return  # the server is stopping
            mine = await to_thread.run_sync(_scoped, sessions, change, scope)
            if mine is not None:
                yield _frame("change", mine)


@router.get(
    "/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "server-sent events: hello, then change"}},
)
async def live(request: Request, scope: CurrentScope, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: ``change`` with the alerts (id, event kind, severity, state,
    summary), devices and alerts' deliveries that moved in the caller's scope, within
    about a second of any fleet process writing them."""
    feed = _feed(request, services.sessions)
    return StreamingResponse(
        _stream(feed, services.sessions, scope),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
