"""The ticker's once-a-second questions use the partial indexes, not a table scan: the
tables they ask only grow (every check, every action, every alert ever)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.sql import Executable

from fleet.db.base import make_engine
from fleet.db.migrate import upgrade
from fleet.db.models import Alert, AuditEntry, CheckRun

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        (update(CheckRun).where(CheckRun.verdict.is_(None), CheckRun.requested_at <= NOW)
         .values(verdict="no_answer"), "ix_check_run_unanswered"),
        (update(AuditEntry).where(AuditEntry.outcome == "accepted", AuditEntry.at <= NOW)
         .values(outcome="timeout"), "ix_audit_awaiting_answer"),
        (select(Alert).where(Alert.pending_since.is_not(None)), "ix_alert_pending"),
        (select(Alert).where(Alert.notice_kind.is_not(None)), "ix_alert_notice"),
    ],
)
def test_tick_queries_use_their_index(tmp_path: Path, statement: Executable, index: str) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)  # the migrated schema, as production has it
    engine = make_engine(url)
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        plan = " ".join(str(row[-1]) for row in rows)
    engine.dispose()
    assert index in plan, plan
