"""Schedules per school (or pair) and semester, place-scoped calendars, edits on the day

Lessons belong to a schedule (school or pair, semester) instead of a file name; the
global ``holiday`` table becomes ``calendar_day``, scoped to a place, which also holds
make-up workdays (调休).  Existing holidays become province-wide days.

Revision ID: a1b2c3d40017
Revises: a1b2c3d40015
Create Date: 2026-11-29 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c3d40017"
down_revision: str | Sequence[str] | None = "a1b2c3d40015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "semester",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("end", sa.Date(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("semester_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("pair_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["pair_id"], ["pair.id"]),
        sa.ForeignKeyConstraint(["school_id"], ["school.id"]),
        sa.ForeignKeyConstraint(["semester_id"], ["semester.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("semester_id", "owner"),
    )
    with op.batch_alter_table("schedule") as batch:
        batch.create_index(batch.f("ix_schedule_semester_id"), ["semester_id"], unique=False)
    op.create_table(
        "calendar_day",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("place_id", sa.Integer(), nullable=False),
        sa.Column("runs_weekday", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "level", "place_id"),
    )
    with op.batch_alter_table("calendar_day") as batch:
        batch.create_index(batch.f("ix_calendar_day_day"), ["day"], unique=False)
    op.execute(
        "INSERT INTO calendar_day (day, name, level, place_id) "
        "SELECT day, name, 'province', 0 FROM holiday"
    )
    op.drop_table("holiday")
    with op.batch_alter_table("lesson") as batch:
        batch.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("edit", sa.String(length=16), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("planned_classroom_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_lesson_schedule_id_schedule", "schedule", ["schedule_id"], ["id"]
        )
        batch.create_foreign_key(
            "fk_lesson_planned_classroom_id_classroom", "classroom",
            ["planned_classroom_id"], ["id"],
        )
        batch.create_index(batch.f("ix_lesson_schedule_id"), ["schedule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lesson") as batch:
        batch.drop_index(batch.f("ix_lesson_schedule_id"))
        batch.drop_constraint("fk_lesson_planned_classroom_id_classroom", type_="foreignkey")
        batch.drop_constraint("fk_lesson_schedule_id_schedule", type_="foreignkey")
        batch.drop_column("planned_classroom_id")
        batch.drop_column("planned_at")
        batch.drop_column("edit")
        batch.drop_column("schedule_id")
    op.create_table(
        "holiday",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    # Only province-wide closed days were global holidays before.
    op.execute(
        "INSERT INTO holiday (day, name) SELECT day, name FROM calendar_day "
        "WHERE level = 'province' AND runs_weekday IS NULL"
    )
    op.drop_table("calendar_day")
    op.drop_table("schedule")
    op.drop_table("semester")
