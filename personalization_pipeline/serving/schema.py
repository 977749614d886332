"""Serving tables in PostgreSQL and the restricted role the lookup API runs as.

``ensure_schema`` is idempotent and serialised with an advisory lock, so concurrent
pipeline runs and API starts can all call it.
"""

from __future__ import annotations

import psycopg

RANKS = "personalization_ranks"
GLOBAL_RANKS = "personalization_global_ranks"
RATIONALE = "personalization_rank_rationale"
FEATURES = "personalization_features"
SIMILAR_USERS = "personalization_similar_users"
MODELS = "personalization_models"
EVAL = "personalization_eval"
SETTINGS = "personalization_settings"

API_ROLE = "personalization_api"
"""NOLOGIN role the API switches to: it can read rankings, models and evaluation and
read/write opt-out settings, and has no access to rationale, features or similar users."""

_SCHEMA_LOCK_KEY = 0x5E5F1A7E

DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {RANKS} (
        user_id text NOT NULL,
        scope text NOT NULL,
        items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
        model_version text NOT NULL,
        variant text,
        generated_at timestamptz NOT NULL,
        valid_until timestamptz NOT NULL,
        PRIMARY KEY (user_id, scope))""",
    f"CREATE INDEX IF NOT EXISTS {RANKS}_valid_until_idx ON {RANKS} (valid_until)",
    f"""CREATE TABLE IF NOT EXISTS {GLOBAL_RANKS} (
        scope text PRIMARY KEY,
        items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
        model_version text NOT NULL,
        variant text,
        generated_at timestamptz NOT NULL,
        valid_until timestamptz NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {RATIONALE} (
        user_id text NOT NULL,
        scope text NOT NULL,
        tags jsonb NOT NULL,
        generated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, scope))""",
    f"""CREATE TABLE IF NOT EXISTS {FEATURES} (
        user_id text PRIMARY KEY,
        features jsonb NOT NULL,
        computed_at timestamptz NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {FEATURES}_computed_at_idx ON {FEATURES} (computed_at)",
    f"""CREATE TABLE IF NOT EXISTS {SIMILAR_USERS} (
        user_id text NOT NULL,
        similar_user_id text NOT NULL,
        similarity_score double precision NOT NULL,
        common_attributes jsonb NOT NULL DEFAULT '[]'::jsonb,
        calculated_at timestamptz NOT NULL,
        PRIMARY KEY (user_id, similar_user_id))""",
    f"""CREATE TABLE IF NOT EXISTS {MODELS} (
        model_name text NOT NULL,
        model_version text NOT NULL,
        metrics jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        trained_at timestamptz NOT NULL,
        active boolean NOT NULL DEFAULT false,
        PRIMARY KEY (model_name, model_version))""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {MODELS}_one_active_idx ON {MODELS} (model_name) WHERE active",
    f"""CREATE TABLE IF NOT EXISTS {EVAL} (
        run_id text NOT NULL,
        model_name text NOT NULL,
        metric text NOT NULL,
        k integer NOT NULL,
        value double precision,
        computed_at timestamptz NOT NULL,
        PRIMARY KEY (run_id, model_name, metric, k))""",
    f"CREATE INDEX IF NOT EXISTS {EVAL}_computed_at_idx ON {EVAL} (computed_at)",
    f"""CREATE TABLE IF NOT EXISTS {SETTINGS} (
        user_id text PRIMARY KEY,
        personalization_enabled boolean NOT NULL DEFAULT true,
        data_sharing_consent boolean,
        updated_at timestamptz NOT NULL DEFAULT now())""",
)

_ROLE_DDL: tuple[str, ...] = (
    f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
            CREATE ROLE {API_ROLE} NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN NULL;
    END $$""",
)

_GRANTS: tuple[str, ...] = (
    f"GRANT USAGE ON SCHEMA public TO {API_ROLE}",
    f"GRANT SELECT ON {RANKS}, {GLOBAL_RANKS}, {MODELS}, {EVAL} TO {API_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE ON {SETTINGS} TO {API_ROLE}",
    f"REVOKE ALL ON {RATIONALE}, {FEATURES}, {SIMILAR_USERS} FROM {API_ROLE}",
)

SERVING_TABLES: tuple[str, ...] = (
    RANKS, GLOBAL_RANKS, RATIONALE, FEATURES, SIMILAR_USERS, MODELS, EVAL, SETTINGS,
)


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the serving tables, indexes and API role grants if missing.

    Runs in its own transaction (a savepoint when the caller already has one open).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for statement in DDL + _ROLE_DDL:
            conn.execute(statement)
        role_exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (API_ROLE,)
        ).fetchone()
        if role_exists:
            for statement in _GRANTS:
                conn.execute(statement)
