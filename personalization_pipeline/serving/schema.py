"""Serving tables in PostgreSQL, the restricted role the lookup API runs as, its grants and
row-level security.

The tables' shape is versioned by Alembic migrations (:mod:`.migrate`); ``ensure_schema``
applies them, then the role, grants and row-level security. It is idempotent and serialised
with advisory locks, so concurrent pipeline runs and API starts can all call it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from personalization_pipeline.serving import migrate
from personalization_pipeline.serving.auth import ADMIN_ROLES

RANKS = "personalization_ranks"
GLOBAL_RANKS = "personalization_global_ranks"
RATIONALE = "personalization_rank_rationale"
FEATURES = "personalization_features"
SIMILAR_USERS = "personalization_similar_users"
MODELS = "personalization_models"
EVAL = "personalization_eval"
SETTINGS = "personalization_settings"
EXPERIMENTS = "personalization_experiments"
EXPERIMENT_ASSIGNMENTS = "personalization_experiment_assignments"
EXPERIMENT_EXPOSURES = "personalization_experiment_exposures"
EXPERIMENT_RESULTS = "personalization_experiment_results"
RANK_EXPLANATION = "personalization_rank_explanation"
"""SECURITY DEFINER function (migration 0003): an admin caller's only way to rationale tags."""
SERVED_RANKING = "personalization_served_ranking"
"""SECURITY INVOKER function (migration 0006): the rankings read in one statement, naming its caller."""
API_FUNCTIONS: tuple[str, ...] = (
    f"{RANK_EXPLANATION}(text, text, integer)",
    f"{SERVED_RANKING}(text, text, text, text, integer)",
)
"""The functions the API role may call (those that exist: an upgrade grants as it goes)."""

API_ROLE = "personalization_api"
"""LOGIN role the lookup API runs as. It owns nothing; it may read rankings, global rankings,
models and evaluation, read and upsert settings, call :data:`API_FUNCTIONS`, and nothing else.
Row-level security limits its per-user rows to the caller named in the transaction's settings
below."""

CALLER_USER_SETTING = "personalization.user_id"
CALLER_ROLE_SETTING = "personalization.role"

_SCHEMA_LOCK_KEY = 0x5E5F1A7E

SERVING_TABLES: tuple[str, ...] = (
    RANKS,
    GLOBAL_RANKS,
    RATIONALE,
    FEATURES,
    SIMILAR_USERS,
    MODELS,
    EVAL,
    SETTINGS,
    EXPERIMENTS,
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENT_EXPOSURES,
    EXPERIMENT_RESULTS,
)

ROLE_DDL = f"""DO $$ BEGIN
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

PER_USER_TABLES: tuple[str, ...] = (
    RANKS,
    SETTINGS,
    RATIONALE,
    FEATURES,
    SIMILAR_USERS,
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENT_EXPOSURES,
)
ADMIN_TABLES: tuple[str, ...] = (EXPERIMENTS, EXPERIMENT_RESULTS)
"""Row-level security is enabled on these too: only an admin caller sees or writes a row."""
SECURED_TABLES = PER_USER_TABLES + ADMIN_TABLES
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
    *(
        (table, "admin_caller_only", f"FOR ALL USING ({_ADMIN_CALLER}) WITH CHECK ({_ADMIN_CALLER})")
        for table in ADMIN_TABLES
    ),
)
"""(table, policy name, body) for every role but the tables' owner (the pipeline): a caller
reads its own rows (admins all rows) and writes only its own settings row; experiments and their
results are an admin caller's only."""

_GRANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SELECT", (RANKS, GLOBAL_RANKS, MODELS, EVAL, EXPERIMENT_RESULTS)),
    ("SELECT, INSERT, UPDATE", (SETTINGS, EXPERIMENTS)),
)
"""Exactly these privileges on the tables that exist, re-applied on every call, and ``EXECUTE`` on
:data:`API_FUNCTIONS`: none on rationale, features, similar users, assignments or exposures (an
admin caller reads rationale through :data:`RANK_EXPLANATION` only)."""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Migrate the serving tables to the newest schema (:func:`migrate.upgrade`, on its own
    connection; migration 0004 creates the API role, its grants and row-level security), then
    re-apply the grants and any missing row-level security (:func:`secure_tables`).

    Raises :class:`migrate.SchemaTooNewError` for a database migrated by newer code. Row-level
    security and policies are only added when missing, so a publish never waits on a table lock.
    """
    migrate.upgrade(conn)
    with conn.transaction():
        secure_tables(conn)


def secure_tables(conn: psycopg.Connection) -> None:
    """Row-level security and policies where missing, and exactly the API role's grants (when the
    role exists): on every serving table, e.g. one just swapped in by a publish. Run in a transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))  # concurrent GRANTs would collide
    present = {
        name
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname = ANY(%s)",
            (list(SERVING_TABLES),),
        )
    }
    _enable_row_security(conn, present)
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (API_ROLE,)).fetchone():
        _grant(conn, present)


def _grant(conn: psycopg.Connection, present: set[str]) -> None:
    """Revoke everything from the API role on the serving tables, then grant exactly :data:`_GRANTS`."""
    role = sql.Identifier(API_ROLE)
    existing = [sql.Identifier(table) for table in SERVING_TABLES if table in present]
    conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(sql.SQL(", ").join(existing), role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    for privileges, names in _GRANTS:
        granted = [sql.Identifier(table) for table in names if table in present]
        conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), sql.SQL(", ").join(granted), role))
    for (function,) in conn.execute(
        "SELECT f FROM unnest(%s::text[]) AS f WHERE to_regprocedure(f) IS NOT NULL", (list(API_FUNCTIONS),)
    ):
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), role))


def _enable_row_security(conn: psycopg.Connection, present: set[str]) -> None:
    unsecured = conn.execute(
        "SELECT relname FROM pg_class WHERE oid = ANY(%s::text[]::regclass[]) AND NOT relrowsecurity",
        ([table for table in SECURED_TABLES if table in present],),
    ).fetchall()
    for (table,) in unsecured:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier(table)))
    existing = set(
        conn.execute("SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()").fetchall()
    )
    for table, name, body in POLICIES:
        if table in present and (table, name) not in existing:
            conn.execute(
                sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), sql.Identifier(table)) + sql.SQL(body)
            )
