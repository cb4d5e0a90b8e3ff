"""The technicians' page in real Chromium against the real app served by uvicorn: the
fixtures and steps the page's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from tests.fleet.api_world import PASSWORD, World
from tests.fleet.checks_helpers import fleet_ingest
from tests.served import served as serve

__all__ = ["ARGS", "CHROMIUM", "browser", "log_in", "served"]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def served(world: World, broker: Mosquitto, tmp_path: Path) -> Iterator[str]:
    publisher = fleet_ingest(broker, world.sessions, [])
    world.services.actions = Actions(
        world.sessions, publisher, Signer.from_file(tmp_path / "fleet.key"), clock=world.clock
    )
    with serve(world.app) as url:
        yield url
    publisher.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def log_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(url)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
