from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from setuptools import find_packages
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import sessionmaker

import fleet.db.models  # noqa: F401  (all tables on the metadata)
from fleet.db.base import Base, SessionFactory, make_engine, session_scope
from fleet.db.migrate import MIGRATIONS, check, upgrade
from fleet.db.models import AuditEntry, Lesson
from fleet.inventory import device_context
from fleet.timetable import Semester, import_timetable
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import load_pilot

ROOT = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionFactory]:
    """Sessions on a database built by the migrations (not create_all), on each engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres"), f"t_{uuid.uuid4().hex[:12]}")
    upgrade(url)
    engine = make_engine(url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_upgrade_creates_every_table_and_repeats_harmlessly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    upgrade(url)
    assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}


def test_migrations_cover_every_model_change() -> None:
    assert check(), "models.py changed: run `python -m fleet.db.migrate revision '<what>'`"


def test_migrations_ship_in_the_package() -> None:
    packages = find_packages(str(ROOT), include=["agent*", "fleet*"])
    assert {"fleet.migrations", "fleet.migrations.versions"} <= set(packages)
    assert (MIGRATIONS / "script.py.mako").exists() and (MIGRATIONS / "env.py").exists()
    revisions = [p for p in (MIGRATIONS / "versions").glob("*.py") if p.name != "__init__.py"]
    assert revisions and all("import fleet" not in p.read_text() for p in revisions)


def test_round_trip_keeps_datetimes_aware_utc(migrated: SessionFactory) -> None:
    at = datetime(2026, 9, 7, 8, 0, tzinfo=CST)
    with session_scope(migrated) as s:
        s.add(AuditEntry(actor="admin", action="reboot", outcome="accepted", at=at,
                         args={"设备": "dongtou-luxi-sync1"}))
    with session_scope(migrated) as s:
        entry = s.scalars(sa.select(AuditEntry)).one()
        assert entry.at == at and entry.at.tzinfo == UTC
        assert entry.at.hour == 0 and entry.args == {"设备": "dongtou-luxi-sync1"}
    with pytest.raises(StatementError, match="naive datetime"), session_scope(migrated) as s:
        s.add(AuditEntry(actor="x", action="reboot", outcome="accepted",
                         at=datetime(2026, 9, 7, 8, 0)))  # noqa: DTZ001


def test_timetable_import_on_each_engine(migrated: SessionFactory) -> None:
    load_pilot(migrated)
    data = ("类型,星期,开始,结束,学科,主讲学校,接收教室\n"
            "每周,周一,07:30,08:10,数学,洞头区实验小学,洞头区鹿西乡小学\n").encode()
    semester = Semester(date(2026, 9, 1), date(2026, 9, 30))
    with session_scope(migrated) as s:
        assert import_timetable(s, data, "t.csv", semester=semester).created == 4
    with session_scope(migrated) as s:
        starts = list(s.scalars(sa.select(Lesson.starts_at).order_by(Lesson.starts_at)))
    assert starts[0] == datetime(2026, 9, 6, 23, 30, tzinfo=UTC)
    assert all(t.tzinfo == UTC for t in starts)
    with session_scope(migrated) as s:
        again = import_timetable(s, data, "t.csv", semester=semester)
        ctx = device_context(s, "yueqing-shantou-sync1")
    assert (again.created, again.unchanged) == (0, 4)
    assert ctx is not None and ctx.pairs == ("乐清城南—山头、龙西结对",)


def test_upgrade_closes_duplicate_open_tickets_before_enforcing_one(
    tmp_path: Path, postgres: str
) -> None:
    """Databases written by several processes before the unique index hold duplicate open
    tickets: the newest stays open, the older ones are resolved with a note saying why."""
    for url in (f"sqlite:///{tmp_path / 'fleet.db'}",
                fresh_database(postgres, f"dupes_{uuid.uuid4().hex[:8]}")):
        upgrade(url, "a1b2c3d40007")
        engine = sa.create_engine(url)
        at = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
        row = {"fingerprint": "device_offline|rural-1|", "rule": "device_offline",
               "severity": "critical", "state": "FIRING", "entity": "", "labels": "{}",
               "summary_zh": "", "summary_en": "", "started_at": at, "last_seen_at": at,
               "escalation_level": 0, "reopen_count": 0, "details": "{}"}
        insert = sa.text(
            f"INSERT INTO alert ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"
        ).bindparams(sa.bindparam("started_at", type_=sa.DateTime(timezone=True)),
                     sa.bindparam("last_seen_at", type_=sa.DateTime(timezone=True)))
        with engine.begin() as conn:
            for state in ("RESOLVED", "FIRING", "PENDING"):
                conn.execute(insert, {**row, "state": state})
        upgrade(url)
        with engine.connect() as conn:
            states = conn.execute(sa.text("SELECT id, state FROM alert ORDER BY id")).all()
            notes = conn.execute(sa.text("SELECT alert_id, kind, text FROM alert_event")).all()
        engine.dispose()
        assert [s for _, s in states] == ["RESOLVED", "RESOLVED", "PENDING"]
        keep = states[2][0]
        assert notes == [(states[1][0], "resolved",
                          f"重复工单，已并入 #{keep} / duplicate of #{keep}, merged")]
