"""Schemathesis against the app's own OpenAPI schema, as an admin: no input may make the
API fail with a 5xx, and what it answers must match what the schema promises.

The app runs over one pilot database for the whole module (schemathesis collects the
operations at import time), so later operations see what earlier ones created.
Requests go through the app's own httpx TestClient: grafana-client pulls in
urllib3-future, which replaces urllib3 and breaks schemathesis' requests transport.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.orm import sessionmaker

from fleet.db.base import Base, make_engine
from tests.fleet.api_world import open_world
from tests.fleet.pilot import load_pilot

_DIR = Path(tempfile.mkdtemp(prefix="syncclass-schema-"))
atexit.register(shutil.rmtree, _DIR, True)
_ENGINE = make_engine(f"sqlite:///{_DIR / 'fleet.db'}")
Base.metadata.create_all(_ENGINE)
_SESSIONS = sessionmaker(_ENGINE, expire_on_commit=False)
load_pilot(_SESSIONS)
WORLD = open_world(_SESSIONS)
ADMIN = WORLD.headers("admin")

schema = schemathesis.openapi.from_asgi("/openapi.json", WORLD.app)


def _httpx_kwargs(case: schemathesis.Case) -> dict[str, Any]:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=ADMIN)
    kwargs.pop("timeout", None)
    kwargs.pop("allow_redirects", None)
    if not kwargs.get("cookies"):
        kwargs.pop("cookies", None)
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        kwargs["content"] = kwargs.pop("data")
    if "files" in kwargs:
        kwargs["files"] = [(name, _file(value)) for name, value in _items(kwargs["files"])]
    return kwargs


def _items(files: Any) -> list[tuple[str, Any]]:
    return list(files.items()) if isinstance(files, dict) else list(files)


def _file(value: Any) -> Any:
    """httpx wants bytes where requests accepts anything it can str()."""
    if isinstance(value, tuple):
        return (value[0], _file(value[1]), *value[2:])
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = WORLD.client.request(**_httpx_kwargs(case))
    response.request.read()  # multipart bodies stream; the checks look at the request
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
