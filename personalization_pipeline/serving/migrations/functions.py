"""SQL functions created by the migrations: bound to the migrated schema, callable by their owner alone
until ``schema.ensure_schema`` grants ``EXECUTE`` to the API role."""

import sqlalchemy as sa
from alembic import op


def create_function(create: str, signature: str) -> None:
    """Run ``create`` (``CREATE OR REPLACE FUNCTION …`` with a ``{search_path}`` placeholder) so that
    tables are looked up in the migrated schema only (``pg_temp`` last, so no session's temporary
    table can stand in for one), then revoke ``EXECUTE`` on ``signature`` from PUBLIC."""
    schema: str = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    op.execute(create.format(search_path=f"{schema}, pg_temp"))
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")


def drop_function(signature: str) -> None:
    op.execute(f"DROP FUNCTION {signature}")
