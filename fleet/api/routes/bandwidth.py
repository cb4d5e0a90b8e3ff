"""The bandwidth test endpoint the agents' pre-class check measures against.

``GET /api/v1/bandwidth?bytes=N`` streams N incompressible bytes (at most
``api.bandwidth_max_bytes``) to time the downlink; ``POST /api/v1/bandwidth`` swallows
the body (same cap, else 413) and says how many bytes arrived in how many seconds, for
the uplink.  Only a device holding the token of a run-check the fleet signed may use it
(``fleet.bandwidth``): the token comes as ``Authorization: Bearer`` or, from agents that
send their pre-signed URL as given, as the URL's ``token`` parameter.  Anyone else is
answered 401, and a device past its quota 429, before a byte of the payload moves: the
download has not started and the upload's body is never read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from agent.contract import BANDWIDTH_TOKEN_PARAM
from fleet.api.deps import ServicesDep
from fleet.bandwidth import QuotaExceeded, TokenRefused

__all__ = ["router"]

router = APIRouter(tags=["service"])
_CHUNK = os.urandom(64 * 1024)  # random: no proxy or link compression can flatter the result
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass-bandwidth"'}


class UploadOut(BaseModel):
    bytes: int
    seconds: float
    mbps: float


class RefusedOut(BaseModel):
    detail: str


_GATED: dict[int | str, dict[str, Any]] = {
    401: {"model": RefusedOut, "description": "no valid token of a fleet-sent check"},
    429: {"model": RefusedOut, "description": "this device's tests are used up for now"},
}


def _token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query_params.get(BANDWIDTH_TOKEN_PARAM)


def admitted_device(request: Request, services: ServicesDep) -> str:
    """The device whose token this request carries, within its quota; else 401 / 429."""
    gate = services.bandwidth
    if gate is None:
        raise HTTPException(401, "测速接口未启用 / bandwidth test not enabled", _CHALLENGE)
    try:
        return gate.admit(_token(request))
    except TokenRefused as refused:
        raise HTTPException(401, f"{refused.message_zh} / {refused.message_en}",
                            _CHALLENGE) from None
    except QuotaExceeded as exceeded:
        seconds = max(1, round(exceeded.retry_after_s))
        raise HTTPException(
            429, f"测速过于频繁，请{seconds}秒后再试 / too many bandwidth tests from this "
            f"device; retry in {seconds} s", {"Retry-After": str(seconds)}) from None


Device = Annotated[str, Depends(admitted_device)]


@router.get("/api/v1/bandwidth", response_class=StreamingResponse, responses=_GATED)
def download(
    services: ServicesDep,
    _device: Device,
    size: Annotated[int, Query(alias="bytes", ge=0)] = 1_000_000,
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


@router.post("/api/v1/bandwidth",
             responses={**_GATED, 413: {"description": "body over the cap"}})
async def upload(request: Request, services: ServicesDep, _device: Device) -> UploadOut:
    cap = services.config.bandwidth_max_bytes
    started = time.monotonic()
    received = 0
    async for piece in request.stream():
        received += len(piece)
        if received > cap:
            raise HTTPException(413, f"上传超过上限 / body over {cap} bytes")
    seconds = max(time.monotonic() - started, 1e-6)
    return UploadOut(bytes=received, seconds=seconds, mbps=received * 8 / seconds / 1e6)
