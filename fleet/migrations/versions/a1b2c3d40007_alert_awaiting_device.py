"""alert.awaiting_device: resolved by a person, waiting for the device to confirm

Revision ID: a1b2c3d40007
Revises: ae01a7e1aba1
Create Date: 2026-11-29 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40007"
down_revision: str | Sequence[str] | None = "a1b2c3d40002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.add_column(
            sa.Column("awaiting_device", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("awaiting_device")
