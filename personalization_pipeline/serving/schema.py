"""Serving tables in PostgreSQL, the restricted role the lookup API runs as, its grants and
row-level security.

``ensure_schema`` is idempotent and serialised with an advisory lock, so concurrent
pipeline runs and API starts can all call it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from personalization_pipeline.serving.auth import ADMIN_ROLES

RANKS = "personalization_ranks"
GLOBAL_RANKS = "personalization_global_ranks"
RATIONALE = "personalization_rank_rationale"
FEATURES = "personalization_features"
SIMILAR_USERS = "personalization_similar_users"
MODELS = "personalization_models"
EVAL = "personalization_eval"
SETTINGS = "personalization_settings"

API_ROLE = "personalization_api"
"""LOGIN role the lookup API runs as. It owns nothing; it may read rankings, global rankings,
models and evaluation, read and upsert settings, and nothing else. Row-level security
limits its per-user rows to the caller named in the transaction's settings below."""

CALLER_USER_SETTING = "personalization.user_id"
CALLER_ROLE_SETTING = "personalization.role"

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

SERVING_TABLES: tuple[str, ...] = (
    RANKS,
    GLOBAL_RANKS,
    RATIONALE,
    FEATURES,
    SIMILAR_USERS,
    MODELS,
    EVAL,
    SETTINGS,
)

_ROLE_DDL = f"""DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        CREATE ROLE {API_ROLE} LOGIN;
    ELSIF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        ALTER ROLE {API_ROLE} LOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN NULL;
    WHEN internal_error THEN  -- "tuple concurrently updated": another database did the same
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{API_ROLE}' AND rolcanlogin) THEN
            RAISE;
        END IF;
END $$"""
"""Roles are cluster-wide: several databases (test runs) may run this at once. Without the
right to create or alter roles the API falls back to ``SET ROLE`` or refuses to start."""

PER_USER_TABLES: tuple[str, ...] = (RANKS, SETTINGS, RATIONALE, FEATURES, SIMILAR_USERS)
"""Row-level security is enabled on these; without a policy a non-owner sees no row at all.
It is not FORCEd: FORCE binds only the tables' owner, the pipeline, which must see every row
(publish, ingest of consent); the API role owns nothing. Global rankings, models and
evaluation hold no per-user data and have no row-level security."""

_OWN_ROW = f"user_id = nullif(current_setting('{CALLER_USER_SETTING}', true), '')"
_ADMIN_LITERALS = ", ".join(f"'{role}'" for role in sorted(ADMIN_ROLES))
_ADMIN_CALLER = f"current_setting('{CALLER_ROLE_SETTING}', true) IN ({_ADMIN_LITERALS})"
POLICIES: tuple[tuple[str, str, str], ...] = (
    (RANKS, "caller_reads_own_rows", f"FOR SELECT USING ({_OWN_ROW} OR {_ADMIN_CALLER})"),
    (SETTINGS, "caller_reads_own_rows", f"FOR SELECT USING ({_OWN_ROW} OR {_ADMIN_CALLER})"),
    (SETTINGS, "caller_inserts_own_row", f"FOR INSERT WITH CHECK ({_OWN_ROW})"),
    (SETTINGS, "caller_updates_own_row", f"FOR UPDATE USING ({_OWN_ROW}) WITH CHECK ({_OWN_ROW})"),
)
"""(table, policy name, body) for every role but the tables' owner (the pipeline): a caller
reads its own rows (admins all rows) and writes only its own settings row."""

_GRANTS: tuple[str, ...] = (
    f"REVOKE ALL ON {', '.join(SERVING_TABLES)} FROM PUBLIC, {API_ROLE}",
    f"GRANT USAGE ON SCHEMA public TO {API_ROLE}",
    f"GRANT SELECT ON {RANKS}, {GLOBAL_RANKS}, {MODELS}, {EVAL} TO {API_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE ON {SETTINGS} TO {API_ROLE}",
)
"""Exactly these privileges, re-applied on every call: none on rationale, features or similar users."""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the serving tables, indexes, API role, grants and row-level security if missing.

    Runs in its own transaction (a savepoint when the caller already has one open). Row-level
    security and policies are only added when missing, so a publish never waits on a table lock.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for statement in DDL:
            conn.execute(statement)
        conn.execute(_ROLE_DDL)
        _enable_row_security(conn)
        role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (API_ROLE,)).fetchone()
        if role_exists:
            for statement in _GRANTS:
                conn.execute(statement)


def _enable_row_security(conn: psycopg.Connection) -> None:
    unsecured = conn.execute(
        "SELECT relname FROM pg_class WHERE oid = ANY(%s::text[]::regclass[]) AND NOT relrowsecurity",
        (list(PER_USER_TABLES),),
    ).fetchall()
    for (table,) in unsecured:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier(table)))
    existing = set(
        conn.execute("SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()").fetchall()
    )
    for table, name, body in POLICIES:
        if (table, name) not in existing:
            conn.execute(
                sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), sql.Identifier(table)) + sql.SQL(body)
            )
