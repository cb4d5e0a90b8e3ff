"""Schedules keep their file's lesson rows, so a calendar change re-expands them

Revision ID: a1b2c3d40022
Revises: a1b2c3d40017
Create Date: 2026-11-29 22:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40022"
down_revision: str | Sequence[str] | None = "a1b2c3d40017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("schedule") as batch:
        batch.add_column(
            sa.Column("rows_stored", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "schedule_row",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("starts", sa.Time(), nullable=False),
        sa.Column("ends", sa.Time(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("grade", sa.String(length=32), nullable=False),
        sa.Column("teacher", sa.String(length=64), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("LIVE", "RECORDED", name="lessonmode", native_enum=False),
            nullable=False,
        ),
        sa.Column("main_classroom_id", sa.Integer(), nullable=False),
        sa.Column("receiver_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["main_classroom_id"], ["classroom.id"]),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedule.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("schedule_row") as batch:
        batch.create_index(batch.f("ix_schedule_row_schedule_id"), ["schedule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schedule_row") as batch:
        batch.drop_index(batch.f("ix_schedule_row_schedule_id"))
    op.drop_table("schedule_row")
    with op.batch_alter_table("schedule") as batch:
        batch.drop_column("rows_stored")
