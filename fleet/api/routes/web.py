"""The technicians' page: static files, no build step, nothing from the internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["FAVICON_URL", "WEB_DIR", "mount_web"]

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
FAVICON_URL = "/static/favicon.svg"


def _index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _favicon() -> FileResponse:
    return FileResponse(WEB_DIR / "favicon.svg", media_type="image/svg+xml")


def mount_web(app: FastAPI) -> None:
    # Browsers ask for /favicon.ico whatever the page says: answer it with the same icon.
    app.add_api_route("/favicon.ico", _favicon, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
