"""End-to-end fixtures: a migrated pilot database, a locked-down broker, the world."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from agent.contract import DEFAULT_PREFIX
from fleet.broker import Mosquitto
from fleet.db.base import make_engine
from fleet.db.migrate import upgrade
from fleet.dynsec import DynsecAdmin
from tests.e2e.world import FLEET_PASSWORD, PILOT_DEVICES, World, device_password
from tests.fleet.pg import postgres
from tests.fleet.pilot import load_pilot
from tests.fleet.smtp import SmtpServer, smtp_server

__all__ = ["e2e_broker", "pilot_db", "postgres", "smtp_server", "world"]


@pytest.fixture(scope="session")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Wenzhou pilot inventory in a database migrated the way the fleet migrates it."""
    path = tmp_path_factory.mktemp("e2e-pilot") / "fleet.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    load_pilot(sessionmaker(engine))
    engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def e2e_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Production's broker set-up: the dynamic security plugin, a client per device whose
    role pins it to its topics (as enrolment makes them), and the fleet's client."""
    with Mosquitto(workdir=tmp_path / "mqtt", dynsec=True) as mq:
        admin = DynsecAdmin(mq.admin_login)
        admin.ensure_fleet_client(DEFAULT_PREFIX, "fleet", FLEET_PASSWORD)
        for device_id in PILOT_DEVICES:
            admin.put_device(DEFAULT_PREFIX, device_id, device_password(device_id))
        yield mq


@pytest.fixture
def world(
    tmp_path: Path, pilot_db: Path, e2e_broker: Mosquitto, smtp_server: SmtpServer
) -> Iterator[World]:
    shutil.copyfile(pilot_db, tmp_path / "fleet.db")
    world = World(tmp_path, e2e_broker, smtp_server)
    try:
        yield world
    finally:
        world.close()
