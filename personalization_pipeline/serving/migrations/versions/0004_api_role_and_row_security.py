"""The lookup API's role, its grants, and row-level security with its policies on the per-user tables.

Before this revision the code applied them on every start; from it on they are part of the
migrated schema. ``schema.secure_tables`` still re-applies grants and missing security after a
publish swaps freshly loaded tables in (a new table carries neither).

Revision ID: 0004
Revises: 0003
"""

import psycopg
from alembic import op

from personalization_pipeline.serving import schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(schema.ROLE_DDL)  # cluster-wide, idempotent, safe against other databases
    driver = bind.connection.driver_connection  # the psycopg connection, in the migration's transaction
    assert isinstance(driver, psycopg.Connection)
    schema.secure_tables(driver)


_SECURED = schema.PER_USER_TABLES[:5]
"""The tables of this revision that have row-level security (later revisions add more)."""


def downgrade() -> None:
    for table, name, _ in schema.POLICIES:
        if table in _SECURED:
            op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    for table in _SECURED:
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON {', '.join(schema.SERVING_TABLES[:8])} FROM {schema.API_ROLE}")
