"""A fresh fleet database for a test: the schema from the models, nothing in it."""

from __future__ import annotations

from pathlib import Path

from fleet.db.base import Base, SessionFactory, make_engine

__all__ = ["fresh_db"]


def fresh_db(tmp_path: Path, url: str | None = None) -> SessionFactory:
    """Sessions on ``tmp_path``/fleet.db, or on the empty database at ``url``.

    Objects stay readable after their session commits (``expire_on_commit=False``), so
    helpers can hand rows back to the test.  The engine is ``factory.kw["bind"]``."""
    engine = make_engine(url or f"sqlite:///{tmp_path / 'fleet.db'}")
    Base.metadata.create_all(engine)
    return SessionFactory(bind=engine, expire_on_commit=False)
