"""Alembic environment: runs on the SQLAlchemy connection handed over by :func:`..migrate.upgrade`."""

from alembic import context

from personalization_pipeline.serving.tables import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
