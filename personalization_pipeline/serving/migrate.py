"""Versioned serving schema: Alembic migrations in :mod:`.migrations`, applied on demand.

:func:`upgrade` brings an empty database, or one created by an older version of the code
(before migrations too), to the newest revision; a database whose revision this code does not
know (created by newer code) is refused with :class:`SchemaTooNewError`, never touched.
Concurrent callers are serialised by an advisory lock.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from psycopg.conninfo import make_conninfo

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_KEY = 0x5E5F1A7D


class SchemaTooNewError(RuntimeError):
    """The database was migrated by newer code than this."""


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def known(revision: str) -> bool:
    """Whether ``revision`` is one of this code's migrations."""
    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except CommandError:
        return False
    return True


def _engine_like(conn: psycopg.Connection) -> sa.Engine:
    """An engine whose connections log in exactly as ``conn`` did (password included)."""
    params = {**conn.info.get_parameters(), "password": conn.info.password}
    conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=sa.NullPool)


def current(conn: psycopg.Connection) -> str | None:
    """The database's revision (None: never migrated)."""
    engine = _engine_like(conn)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(conn: psycopg.Connection) -> str:
    """Migrate the database ``conn`` is connected to up to :func:`head`; return the revision.

    Runs on its own connection (same login) in one transaction.
    """
    engine = _engine_like(conn)
    try:
        return _upgrade(engine)
    except sa.exc.DBAPIError as exc:  # callers handle psycopg's own errors (unreachable, no privilege)
        raise (exc.orig or exc) from None
    finally:
        engine.dispose()


def _upgrade(engine: sa.Engine) -> str:
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is not None and not known(revision):
            raise SchemaTooNewError(
                f"the serving database is at schema revision {revision!r}, newer than this code "
                f"(newest known: {head()!r}); upgrade personalization_pipeline"
            )
        if revision != head():
            command.upgrade(_config(connection), "head")
    return head()
