"""Schemathesis' stateful mode over the API, as an admin: sequences of calls that follow
the links between operations (a created id fed to the operations that take it, an
import job's id to its status), and no step may fail with a 5xx or answer outside the
schema.

Links come from the schema (the timetable upload's 202 names its job) and from
schemathesis' own dependency analysis of the rest.  Every upload runs as a job here, so
the POST → GET-job link is walked whatever size the generated file has.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import response_schema_conformance

from fleet.api.import_jobs import ImportJobs
from tests.fleet.schema_client import httpx_kwargs, module_world
from tests.fuzzing import FUZZ_EXAMPLES, fuzz_settings

# pytest-timeout's 180 s is for the suite's budget; `make fuzz` gives each test up to a
# second per example.
pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(max(180, FUZZ_EXAMPLES))]

WORLD = module_world("syncclass-stateful-")
WORLD.services.config = dataclasses.replace(WORLD.services.config, import_inline_max_bytes=0)
ADMIN = WORLD.headers("admin")

# Remote actions answer 503 without an action service, which needs a broker and agents
# that verify signed commands: tests/fleet/test_api_actions.py runs them on real ones.
schema = schemathesis.openapi.from_asgi("/openapi.json", WORLD.app).exclude(
    path_regex="/actions")


_ENGINE = WORLD.sessions.kw["bind"]
_DB = Path(_ENGINE.url.database)
_SNAPSHOT = _DB.with_name("scenario-start.db")


def _snapshot() -> None:
    _ENGINE.dispose()  # the last connection checkpoints the WAL into the file
    shutil.copyfile(_DB, _SNAPSHOT)


def _restore() -> None:
    """Each scenario starts from the same database: which links a scenario can follow
    depends on what earlier calls created, and hypothesis insists that generation
    behaves the same when it replays a scenario."""
    WORLD.services.imports.close()  # a job still writing finishes first
    WORLD.services.imports = ImportJobs()
    _ENGINE.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{_DB}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(_SNAPSHOT, _DB)


_snapshot()


class APIWorkflow(schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        _restore()

    def call(self, case: schemathesis.Case, **kwargs: Any) -> Response:
        response = WORLD.client.request(**httpx_kwargs(case, ADMIN))
        response.request.read()  # multipart bodies stream; the checks look at the request
        return Response.from_httpx(response, verify=False)

    def validate_response(self, response: Response, case: schemathesis.Case,
                          additional_checks: Any = None, **kwargs: Any) -> None:
        case.validate_response(response, checks=[not_a_server_error,
                                                 response_schema_conformance])


TestAPIWorkflow = APIWorkflow.TestCase
# A scenario is several calls; the budget counts scenarios, so a fifth of the examples.
TestAPIWorkflow.settings = settings(fuzz_settings, max_examples=max(5, FUZZ_EXAMPLES // 5),
                                    stateful_step_count=6)


def test_the_schema_links_the_upload_to_its_job() -> None:
    links = schema["/api/v1/timetable/import"]["POST"].definition.raw["responses"]["202"]
    assert links["links"]["GetImportJob"]["parameters"] == {"job_id": "$response.body#/id"}
