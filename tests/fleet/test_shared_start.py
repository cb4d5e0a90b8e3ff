"""Fleet processes starting together on one database (issue 7, start-up): migrations take
turns, and the secrets they must agree on come from the database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from fleet.db.base import make_engine, session_scope
from fleet.db.migrate import upgrade
from fleet.db.models import FleetSecret
from fleet.db.shared_secret import shared_secret
from tests.fleet.api_world import open_world
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot

ROOT = Path(__file__).resolve().parents[2]
FLEET = Path(sys.executable).with_name("syncclass-fleet")


def test_processes_migrating_one_fresh_postgresql_at_once_all_succeed(
    tmp_path: Path, postgres: str
) -> None:
    url = fresh_database(postgres, f"start_{uuid.uuid4().hex[:8]}")
    config = tmp_path / "fleet.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([str(FLEET), "migrate", "--config", str(config)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in results] == [0, 0, 0], results
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert "fleet_secret" in tables and "alert" in tables
    assert len(versions) == 1  # one schema, migrated once


def test_two_fleets_on_one_database_give_the_same_calendar_link_and_a_restart_keeps_it(
    postgres: str,
) -> None:
    url = fresh_database(postgres, f"cal_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    engines = [make_engine(url) for _ in range(3)]
    try:
        load_pilot(sessionmaker(engines[0], expire_on_commit=False))
        first, second = (open_world(sessionmaker(e, expire_on_commit=False))
                         for e in engines[:2])
        links = [w.get("dt-luxi-tech", "/api/v1/me").json()["calendar_url"]
                 for w in (first, second)]
        assert links[0] == links[1]
        # A link one process gave out opens the calendar on the other.
        feed = second.client.get(links[0])
        assert feed.status_code == 200 and feed.text.startswith("BEGIN:VCALENDAR")
        restarted = open_world(sessionmaker(engines[2], expire_on_commit=False))
        assert restarted.get("dt-luxi-tech", "/api/v1/me").json()["calendar_url"] == links[0]
    finally:
        for e in engines:
            e.dispose()


def test_a_shared_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    sessions = sessionmaker(make_engine(url))
    made: list[str] = []

    def make() -> str:
        made.append(f"secret-{len(made)}")
        return made[-1]

    assert shared_secret(sessions, "calendar", make) == "secret-0"
    assert shared_secret(sessions, "calendar", make) == "secret-0"  # the second one lost
    assert shared_secret(sessions, "other", make) == "secret-2"
    with session_scope(sessions) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(FleetSecret)) == 2
