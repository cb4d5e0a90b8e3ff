"""Shared fixtures: real servers started by the suite itself.

Every server binds a free loopback port so that tests (and helpers running suites in
parallel) never collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.broker import Mosquitto
from tests.agent_payloads import agent_payloads

__all__ = ["agent_payloads", "broker"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private, anonymous Mosquitto for one test."""
    with Mosquitto(workdir=tmp_path / "mqtt") as mq:
        yield mq
