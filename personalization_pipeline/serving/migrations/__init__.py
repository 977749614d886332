"""Alembic migrations of the serving schema (see :mod:`..migrate`)."""
