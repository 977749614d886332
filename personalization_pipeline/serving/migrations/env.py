"""Alembic environment: runs on the SQLAlchemy connection handed over by :func:`..migrate.upgrade`."""

from alembic import context

context.configure(connection=context.config.attributes["connection"], transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
