"""A/B experiments: definitions, assignments, exposure history, results; served lists name their experiment.

Revision ID: 0005
Revises: 0004
"""

import psycopg
from alembic import op

from personalization_pipeline.serving import schema, tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NEW = (tables.experiments, tables.experiment_assignments, tables.experiment_exposures, tables.experiment_results)


def upgrade() -> None:
    op.execute("ALTER TABLE personalization_ranks ADD COLUMN IF NOT EXISTS experiment text")
    bind = op.get_bind()
    for table in _NEW:
        table.create(bind, checkfirst=True)
    driver = bind.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    schema.secure_tables(driver)  # row-level security, policies and the API role's grants on the new tables


def downgrade() -> None:
    for table in reversed(_NEW):
        op.drop_table(table.name)
    op.execute("ALTER TABLE personalization_ranks DROP COLUMN experiment")
