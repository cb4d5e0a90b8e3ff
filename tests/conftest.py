"""Shared fixtures: real servers started by the suite itself.

Every server binds a free loopback port so that tests (and helpers running suites in
parallel) never collide.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.broker import Mosquitto
from tests.agent_payloads import agent_payloads

__all__ = ["agent_payloads", "broker"]

# tests/grafana need grafana-client, whose urllib3-future replaces urllib3 in the venv it is
# installed in and breaks schemathesis' requests transport: `make test-grafana` runs them
# in .venv-grafana, and a venv without grafana-client leaves them out.
collect_ignore = [] if importlib.util.find_spec("grafana_client") else ["grafana"]


def pytest_report_header() -> list[str]:
    if not collect_ignore:
        return []
    return ["tests/grafana: left out here (no grafana-client); `make test-grafana` runs them"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private, anonymous Mosquitto for one test."""
    with Mosquitto(workdir=tmp_path / "mqtt") as mq:
        yield mq
