"""enrolment codes

Revision ID: a1b2c3d40006
Revises: a1b2c3d40004
Create Date: 2026-11-29 18:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40006"
down_revision: str | Sequence[str] | None = "a1b2c3d40001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrol_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("classroom_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["classroom_id"], ["classroom.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("enrol_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrol_code_classroom_id"), ["classroom_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrol_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrol_code_classroom_id"))
    op.drop_table("enrol_code")
