"""device_state.status_at: when the fleet learnt the device's online/offline state

Revision ID: a1b2c3d40011
Revises: a1b2c3d40007
Create Date: 2026-11-29 19:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40011"
down_revision: str | Sequence[str] | None = "a1b2c3d40012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        batch.add_column(sa.Column("status_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        batch.drop_column("status_at")
