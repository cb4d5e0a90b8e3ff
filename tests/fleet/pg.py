"""A real, throw-away PostgreSQL 15 cluster for the tests.

PostgreSQL refuses to run as root, and the suite runs as root in CI containers, so the
cluster is created and run as the ``postgres`` user in a directory it owns.  It listens
on a free loopback port with trust authentication and is gone after the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from fleet.broker import free_port

__all__ = ["PgCluster", "fresh_database", "postgres"]

PG_BIN = Path(os.environ.get("SYNCCLASS_PG_BIN", "/usr/lib/postgresql/15/bin"))
DB_NAME = "syncclass"


class PgCluster:
    """initdb + pg_ctl in a temporary directory; ``url`` is a SQLAlchemy URL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="syncclass-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stderr or proc.stdout}\n{tail}")

    def start(self) -> PgCluster:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )
        # A port taken between free_port() and bind() is retried with another one.
        for _attempt in range(3):
            self.port = free_port()
            try:
                self.resume()
                break
            except RuntimeError:
                if _attempt == 2:
                    raise
        self._create_db()
        return self

    def _create_db(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
                )
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB_NAME}")
        conn.close()

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def halt(self) -> None:
        """Crash the server (no shutdown checkpoint), keeping the cluster for ``resume``."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the server on ``port`` (again, after ``halt``)."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
            str(self.root / "postgres.log"), "-o", options, "-w", "-t", "30", "start",
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def stop(self) -> None:
        if self.running:
            self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """Create an empty database ``name`` next to ``url``'s, so tests don't share tables."""
    base, _, _ = url.rpartition("/")
    host_port = base.rpartition("@")[2]
    host, _, port = host_port.partition(":")
    conn = psycopg2.connect(host=host, port=int(port), user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The SQLAlchemy URL of an empty database on a private PostgreSQL cluster."""
    cluster = PgCluster()
    try:
        yield cluster.start().url
    finally:
        cluster.stop()
