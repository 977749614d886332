"""The serving tables as they were before migrations (idempotent: adopts a database created then).

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS personalization_ranks (
        user_id text NOT NULL,
        scope text NOT NULL,
        items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
        model_version text NOT NULL,
        variant text,
        generated_at timestamptz NOT NULL,
        valid_until timestamptz NOT NULL,
        PRIMARY KEY (user_id, scope))""",
    "CREATE INDEX IF NOT EXISTS personalization_ranks_valid_until_idx ON personalization_ranks (valid_until)",
    """CREATE TABLE IF NOT EXISTS personalization_global_ranks (
        scope text PRIMARY KEY,
        items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
        model_version text NOT NULL,
        variant text,
        generated_at timestamptz NOT NULL,
        valid_until timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS personalization_rank_rationale (
        user_id text NOT NULL,
        scope text NOT NULL,
        tags jsonb NOT NULL,
        generated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, scope))""",
    """CREATE TABLE IF NOT EXISTS personalization_features (
        user_id text PRIMARY KEY,
        features jsonb NOT NULL,
        computed_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS personalization_features_computed_at_idx ON personalization_features (computed_at)",
    """CREATE TABLE IF NOT EXISTS personalization_similar_users (
        user_id text NOT NULL,
        similar_user_id text NOT NULL,
        similarity_score double precision NOT NULL,
        common_attributes jsonb NOT NULL DEFAULT '[]'::jsonb,
        calculated_at timestamptz NOT NULL,
        PRIMARY KEY (user_id, similar_user_id))""",
    """CREATE TABLE IF NOT EXISTS personalization_models (
        model_name text NOT NULL,
        model_version text NOT NULL,
        metrics jsonb NOT NULL DEFAULT '{}'::jsonb,
        trained_at timestamptz NOT NULL,
        active boolean NOT NULL DEFAULT false,
        PRIMARY KEY (model_name, model_version))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS personalization_models_one_active_idx ON personalization_models (model_name) "
    "WHERE active",
    """CREATE TABLE IF NOT EXISTS personalization_eval (
        run_id text NOT NULL,
        model_name text NOT NULL,
        metric text NOT NULL,
        k integer NOT NULL,
        value double precision,
        computed_at timestamptz NOT NULL,
        PRIMARY KEY (run_id, model_name, metric, k))""",
    "CREATE INDEX IF NOT EXISTS personalization_eval_computed_at_idx ON personalization_eval (computed_at)",
    """CREATE TABLE IF NOT EXISTS personalization_settings (
        user_id text PRIMARY KEY,
        personalization_enabled boolean NOT NULL DEFAULT true,
        data_sharing_consent boolean,
        updated_at timestamptz NOT NULL DEFAULT now())""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the first serving schema has no downgrade")
