"""One unresolved alert per fingerprint; shared secrets kept in the database

Revision ID: a1b2c3d40012
Revises: a1b2c3d40007
Create Date: 2026-11-29 19:10:00.000000

Several fleet processes used to open one ticket each for the same fault.  Before the
unique index can exist, the duplicates already stored are closed: the newest ticket of a
fingerprint stays open (it is the one the engine kept updating), the older ones are
resolved with an event that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40012"
down_revision: str | Sequence[str] | None = "a1b2c3d40007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRESOLVED = sa.text("state != 'RESOLVED'")


def _close_duplicates() -> None:
    bind = op.get_bind()
    dupes = bind.execute(sa.text(
        "SELECT a.id, (SELECT max(b.id) FROM alert b WHERE b.fingerprint = a.fingerprint"
        " AND b.state != 'RESOLVED') AS keep FROM alert a WHERE a.state != 'RESOLVED'"
    )).all()
    now = datetime.now(UTC)
    for alert_id, keep in dupes:
        if alert_id == keep:
            continue
        bind.execute(
            sa.text(
                "UPDATE alert SET state = 'RESOLVED', resolved_at = :now, pending_since = NULL,"
                " clear_since = NULL, notice_kind = NULL, notice_since = NULL WHERE id = :id"
            ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            {"now": now, "id": alert_id},
        )
        bind.execute(
            sa.text(
                "INSERT INTO alert_event (alert_id, at, kind, actor, text)"
                " VALUES (:id, :now, 'resolved', 'system', :text)"
            ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            {"id": alert_id, "now": now,
             "text": f"重复工单，已并入 #{keep} / duplicate of #{keep}, merged"},
        )


def upgrade() -> None:
    _close_duplicates()
    op.create_index(
        "ux_alert_open_fingerprint", "alert", ["fingerprint"], unique=True,
        sqlite_where=UNRESOLVED, postgresql_where=UNRESOLVED,
    )
    op.create_table(
        "fleet_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("fleet_secret")
    op.drop_index("ux_alert_open_fingerprint", "alert")
