"""Service endpoints without a person behind them: ``/healthz`` and ``/metrics``, for
the service's own supervision.  (The agents' bandwidth test is ``routes.bandwidth``.)"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from fleet.api.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["service"])


class ServiceHealthOut(BaseModel):
    status: str  # ok / degraded
    db: bool
    mqtt: bool | None  # None: this process has no MQTT ingest to ask
    # This process holds the coordinator lease (runs timers, checks, silence detection);
    # a standby answers false and is healthy all the same.  None: no lease to ask.
    coordinator: bool | None = None


@router.get("/healthz", responses={503: {"model": ServiceHealthOut}})
def healthz(services: ServicesDep) -> JSONResponse:
    try:
        with services.sessions() as session:
            session.execute(text("SELECT 1"))
        db_ok = True
    except Exception:  # any driver error means "not reachable" to a probe
        db_ok = False
    mqtt = services.mqtt_connected() if services.mqtt_connected is not None else None
    healthy = db_ok and mqtt is not False
    coordinator = services.coordinator() if services.coordinator is not None else None
    body = ServiceHealthOut(status="ok" if healthy else "degraded", db=db_ok, mqtt=mqtt,
                            coordinator=coordinator)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
