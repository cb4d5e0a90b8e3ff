"""Service endpoints without a person behind them: health, metrics, the bandwidth test.

``/healthz`` and ``/metrics`` are for the service's own supervision.  The bandwidth
endpoint is the only route agents use: ``GET /api/v1/bandwidth?bytes=N`` streams N
incompressible bytes (at most ``api.bandwidth_max_bytes``) to time the downlink, and
``POST /api/v1/bandwidth`` swallows the body (same cap, else 413) and says how many bytes
arrived in how many seconds, for the uplink.  It is unauthenticated because agents hold
no people credentials; the cap bounds what anyone can make it do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from fleet.api.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["service"])
_CHUNK = os.urandom(64 * 1024)  # random: no proxy or link compression can flatter the result


class ServiceHealthOut(BaseModel):
    status: str  # ok / degraded
    db: bool
    mqtt: bool | None  # None: this process has no MQTT ingest to ask


class UploadOut(BaseModel):
    bytes: int
    seconds: float
    mbps: float


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
    body = ServiceHealthOut(status="ok" if healthy else "degraded", db=db_ok, mqtt=mqtt)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/bandwidth", response_class=StreamingResponse)
def download(
    services: ServicesDep, size: Annotated[int, Query(alias="bytes", ge=0)] = 1_000_000
) -> StreamingResponse:
    total = min(size, services.config.bandwidth_max_bytes)

    def chunks() -> Iterator[bytes]:
        left = total
        while left > 0:
            piece = _CHUNK[: min(left, len(_CHUNK))]
            left -= len(piece)
            yield piece

    headers = {"Content-Length": str(total), "Cache-Control": "no-store"}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


@router.post("/api/v1/bandwidth", responses={413: {"description": "body over the cap"}})
async def upload(request: Request, services: ServicesDep) -> UploadOut:
    cap = services.config.bandwidth_max_bytes
    started = time.monotonic()
    received = 0
    async for piece in request.stream():
        received += len(piece)
        if received > cap:
            raise HTTPException(413, f"上传超过上限 / body over {cap} bytes")
    seconds = max(time.monotonic() - started, 1e-6)
    return UploadOut(bytes=received, seconds=seconds, mbps=received * 8 / seconds / 1e6)
