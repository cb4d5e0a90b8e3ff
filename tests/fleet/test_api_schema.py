"""Schemathesis against the app's own OpenAPI schema, as an admin: no input may make the
API fail with a 5xx, and what it answers must match what the schema promises.

The app runs over one pilot database for the whole module (schemathesis collects the
operations at import time), so later operations see what earlier ones created.
Requests go through the app's own httpx TestClient (tests/fleet/schema_client.py).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fleet.schema_client import httpx_kwargs, module_world

WORLD = module_world("syncclass-schema-")
ADMIN = WORLD.headers("admin")

# The live event stream never ends by itself (a page listens for minutes): it has its own
# tests in tests/fleet/test_live.py.
schema = schemathesis.openapi.from_asgi("/openapi.json", WORLD.app).exclude(path="/api/v1/live")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = WORLD.client.request(**httpx_kwargs(case, ADMIN))
    response.request.read()  # multipart bodies stream; the checks look at the request
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
