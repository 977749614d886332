"""Model registry rows carry kind and parameters; evaluation rows carry the model version.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE personalization_models ADD COLUMN IF NOT EXISTS kind text")
    op.execute("ALTER TABLE personalization_models ADD COLUMN IF NOT EXISTS params jsonb NOT NULL DEFAULT '{}'::jsonb")
    op.execute("ALTER TABLE personalization_eval ADD COLUMN IF NOT EXISTS model_version text")


def downgrade() -> None:
    op.execute("ALTER TABLE personalization_eval DROP COLUMN model_version")
    op.execute("ALTER TABLE personalization_models DROP COLUMN params")
    op.execute("ALTER TABLE personalization_models DROP COLUMN kind")
