"""Secrets every fleet process must agree on, kept in the database.

A secret made up by each process (the calendar links' HMAC key when none is configured)
differs between processes sharing one database and changes at every restart, breaking
the links people pasted into their calendar apps.  The first process to ask stores one;
its INSERT ... ON CONFLICT DO NOTHING lets the others' lose quietly, and every process
then reads the one that won.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import select

from fleet.db.base import SessionFactory, insert_on_conflict, session_scope, utcnow
from fleet.db.models import FleetSecret

__all__ = ["shared_secret"]


def shared_secret(
    sessions: SessionFactory, name: str, make: Callable[[], str] = lambda: secrets.token_hex(32)
) -> str:
    """The secret ``name``, created with ``make`` by whichever process asks first."""
    with session_scope(sessions) as session:
        session.execute(
            insert_on_conflict(session, FleetSecret)
            .values(name=name, value=make(), created_at=utcnow())
            .on_conflict_do_nothing(index_elements=[FleetSecret.name])
        )
        return session.scalars(select(FleetSecret.value).where(FleetSecret.name == name)).one()
