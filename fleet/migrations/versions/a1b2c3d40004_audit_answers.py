"""audit answers: every cmd/result of an audited action, append-only

Revision ID: a1b2c3d40004
Revises: ae01a7e1aba1
Create Date: 2026-11-29 18:02:47.559453
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40004"
down_revision: str | Sequence[str] | None = "ae01a7e1aba1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"],
            ["audit.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_answer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_answer_audit_id"), ["audit_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("audit_answer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_answer_audit_id"))

    op.drop_table("audit_answer")
