"""The stand-in Grafana for one test, with an Admin and a Viewer token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.grafana.grafana_standin import StandinGrafana

ADMIN, VIEWER = "admin-token", "viewer-token"


@pytest.fixture
def grafana() -> Iterator[StandinGrafana]:
    with StandinGrafana({ADMIN: "Admin", VIEWER: "Viewer"}) as server:
        yield server
