"""The FastAPI application: people API under ``/api/v1``, the page at ``/``, and the
service endpoints (``/healthz``, ``/metrics``, the agents' bandwidth test)."""

from __future__ import annotations

import dataclasses
import secrets

from fastapi import FastAPI

from fleet.api import auth
from fleet.api.deps import Services
from fleet.api.metrics import RequestCounter, build_registry
from fleet.api.routes import (
    actions,
    alerts,
    classrooms,
    counties,
    devices,
    lessons,
    maintenance,
    pairs,
    people,
    reports,
    schools,
    system,
    timetable,
    web,
)

__all__ = ["create_api"]

_PEOPLE_ROUTERS = (
    auth.router,
    counties.router,
    schools.router,
    pairs.router,
    classrooms.router,
    devices.router,
    people.router,
    timetable.router,
    lessons.router,
    alerts.router,
    maintenance.router,
    actions.router,
    reports.router,
)


def create_api(services: Services) -> FastAPI:
    if not services.config.calendar_secret:
        services.config = dataclasses.replace(
            services.config, calendar_secret=secrets.token_hex(32)
        )
    app = FastAPI(
        title="syncclass fleet",
        version="1",
        description="同步课堂设备监测 / synchronous classroom fleet monitor. People log in at "
        "`/api/v1/auth/login` and send `Authorization: Bearer <token>`; agents only use "
        "the bandwidth test endpoint.",
    )
    app.state.services = services
    counter = RequestCounter()
    app.state.registry = build_registry([counter, *services.metric_sources])
    app.middleware("http")(counter)
    for router in _PEOPLE_ROUTERS:
        app.include_router(router)
    app.include_router(system.router)
    web.mount_web(app)
    return app
