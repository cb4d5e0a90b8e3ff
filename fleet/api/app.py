"""The FastAPI application: people API under ``/api/v1``, the page at ``/``, and the
service endpoints (``/healthz``, ``/metrics``, the agents' bandwidth test)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fleet.api import auth
from fleet.api.deps import Services
from fleet.api.metrics import RequestCounter, build_registry
from fleet.api.routes import (
    actions,
    alerts,
    bandwidth,
    calendar,
    classrooms,
    counties,
    deliveries,
    device_pages,
    devices,
    enrolment,
    lesson_edits,
    lessons,
    live,
    maintenance,
    pairs,
    people,
    reports,
    schools,
    system,
    timetable,
    web,
)
from fleet.db.shared_secret import shared_secret

__all__ = ["create_api"]

log = logging.getLogger(__name__)

_PEOPLE_ROUTERS = (
    auth.router,
    counties.router,
    schools.router,
    pairs.router,
    classrooms.router,
    devices.router,
    device_pages.router,
    enrolment.router,
    people.router,
    timetable.router,
    lessons.router,
    lesson_edits.router,
    calendar.router,
    alerts.router,
    deliveries.router,
    maintenance.router,
    actions.router,
    reports.router,
    live.router,
)


_INVENTORY_ROUTES = frozenset(
    route.path
    for router in (counties.router, schools.router, pairs.router, classrooms.router, devices.router,
                   enrolment.router)
    for route in router.routes
    if isinstance(route, APIRoute)
)
_WRITES = frozenset({"POST", "PATCH", "DELETE"})

Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _inventory_hook(services: Services) -> Middleware:
    """Tells the fleet about a successful inventory write, in one place for every route.

    The request's unit of work (``deps.db_session``) has committed by the time the
    response comes back here, so the fleet reloads what is really in the database.
    """

    async def hook(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        notify = services.inventory_changed
        route = getattr(request.scope.get("route"), "path", None)
        if (
            notify is not None
            and request.method in _WRITES
            and response.status_code < 400
            and route in _INVENTORY_ROUTES
        ):
            try:
                await run_in_threadpool(notify)
            except Exception:
                # The write is committed: a 500 would only invite a duplicate retry.
                log.exception("inventory refresh failed after %s %s", request.method, route)
        return response

    return hook


def create_api(services: Services) -> FastAPI:
    if not services.config.calendar_secret:
        services.config = dataclasses.replace(
            services.config, calendar_secret=shared_secret(services.sessions, "calendar")
        )
    # /docs from the Swagger UI files in the fastapi-offline wheel, not from a CDN: a
    # county's network may have no internet, and then the docs page would be blank.
    app = FastAPIOffline(
        static_url="/static-docs",
        favicon_url=web.FAVICON_URL,
        title="syncclass fleet",
        version="1",
        description="同步课堂设备监测 / synchronous classroom fleet monitor. People log in at "
        "`/api/v1/auth/login` and send `Authorization: Bearer <token>`; agents only use "
        "the bandwidth test endpoint.",
    )
    app.state.services = services
    counter = RequestCounter()
    app.state.registry = build_registry([counter, *services.metric_sources])
    # Added first, so it runs inside the counter: refused uploads are counted too.
    app.middleware("http")(timetable.upload_limit(services))
    app.middleware("http")(counter)
    app.middleware("http")(_inventory_hook(services))
    for router in _PEOPLE_ROUTERS:
        app.include_router(router)
    app.include_router(system.router)
    app.include_router(bandwidth.router)
    web.mount_web(app)
    return app
