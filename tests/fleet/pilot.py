"""The Wenzhou demo pilot as test data: inventory loaded into a fresh database.

The inventory is loaded once per session into a template SQLite file, which each test
copies; passwords are hashed with cheap argon2 parameters.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import sessionmaker

from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.inventory import DEMO_INVENTORY, load_inventory_file
from tests.fleet.db import fresh_db

__all__ = ["FAST_HASHER", "load_pilot", "pilot", "pilot_template"]

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def load_pilot(factory: SessionFactory) -> None:
    with session_scope(factory) as session:
        load_inventory_file(session, DEMO_INVENTORY, hasher=FAST_HASHER)


@pytest.fixture(scope="session")
def pilot_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pilot")
    sessions = fresh_db(directory)
    load_pilot(sessions)
    sessions.kw["bind"].dispose()  # the last connection checkpoints the WAL into the file
    return directory / "fleet.db"


@pytest.fixture
def pilot(pilot_template: Path, tmp_path: Path) -> Iterator[SessionFactory]:
    """Sessions on a tmp SQLite database holding the demo pilot's inventory."""
    path = tmp_path / "fleet.db"
    shutil.copyfile(pilot_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()
