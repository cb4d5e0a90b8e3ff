"""Alembic migrations of the fleet database (run them with ``fleet.db.migrate``)."""
