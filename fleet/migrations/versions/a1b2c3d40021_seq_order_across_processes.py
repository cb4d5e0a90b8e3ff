"""alert.order_session/order_seq and device_seq_mark: one device's order across processes

With several fleet processes one device's messages are handled by different processes
(issue 7).  A ticket remembers the agent's (session, seq) of the message that last changed
it, so an older message handled later is recognised as stale; each process keeps the
highest seq it handled itself per device, so its own redeliveries after a restart are
judged against what it did, not against the shared last_seq another process moved on.

Revision ID: a1b2c3d40021
Revises: a1b2c3d40022
Create Date: 2026-11-29 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40021"
down_revision: str | Sequence[str] | None = "a1b2c3d40022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("order_session", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("order_seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "device_seq_mark",
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("holder", "device_id"),
    )


def downgrade() -> None:
    op.drop_table("device_seq_mark")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("order_seq")
        batch.drop_column("order_session")
