"""indexes for the page's live updates: check_run.answered_at, notification.sent_at

The live event stream polls for answers and sendings newer than its last look once a
second; without these, each poll would scan both growing tables.

Revision ID: a1b2c3d40019
Revises: a1b2c3d40013
Create Date: 2026-11-29 21:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a1b2c3d40019"
down_revision: str | Sequence[str] | None = "a1b2c3d40013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_check_run_answered_at", "check_run", ["answered_at"])
    op.create_index("ix_notification_sent_at", "notification", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_sent_at", "notification")
    op.drop_index("ix_check_run_answered_at", "check_run")
