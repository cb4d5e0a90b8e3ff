"""device.expected: the inventory's expected cameras, microphones and speakers

Revision ID: a1b2c3d40013
Revises: a1b2c3d40011
Create Date: 2026-11-29 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40013"
down_revision: str | Sequence[str] | None = "a1b2c3d40011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("expected", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.drop_column("expected")
