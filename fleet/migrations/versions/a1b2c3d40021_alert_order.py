"""alert.order_session, alert.order_seq: the message that last changed a ticket

With several fleet processes one device's messages are handled by different processes;
a ticket remembers the agent's (session, seq) of the message that last changed it so an
older message handled later is recognised as stale (issue 7).

Revision ID: a1b2c3d40021
Revises: a1b2c3d40015
Create Date: 2026-11-29 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40021"
down_revision: str | Sequence[str] | None = "a1b2c3d40015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("order_session", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("order_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("order_seq")
        batch.drop_column("order_session")
