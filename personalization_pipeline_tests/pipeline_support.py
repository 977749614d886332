"""Helpers for tests that run whole jobs: an isolated environment and served-table reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.sqlutil import quote_ident


@contextmanager
def pipeline_env(root: Path, database_url: str, **overrides: object) -> Iterator[pytest.MonkeyPatch]:
    """Point every PERSONALIZATION_ setting at ``root`` and ``database_url`` (plus overrides)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONALIZATION_RUNTIME_DIR", str(root))
        env.setenv("PERSONALIZATION_DATABASE_URL", database_url)
        for name, value in overrides.items():
            env.setenv(f"PERSONALIZATION_{name.upper()}", str(value))
        yield env


def served_ranks(settings: Settings) -> pd.DataFrame:
    """All rows of personalization_ranks, ordered by (user_id, scope)."""
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT user_id, scope, items, model_version, generated_at, valid_until FROM personalization_ranks "
            "ORDER BY user_id, scope"
        ).fetchall()
    return pd.DataFrame(rows, columns=["user_id", "scope", "items", "model_version", "generated_at", "valid_until"])


def json_strings(value: object) -> list[str]:
    """Every string in a decoded JSON value: object keys and string values, never numbers."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *json_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def served_strings(url: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """Every text value, JSON key and JSON string of every text/json column of every public table
    but ``exclude``."""
    found: set[str] = set()
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        ).fetchall()
        assert {"personalization_ranks", "personalization_features"} <= {t for t, _, _ in columns}
        for table, column, _ in columns:
            if table in exclude:
                continue
            query = f"SELECT {quote_ident(column)} FROM {quote_ident(table)} WHERE {quote_ident(column)} IS NOT NULL"
            for (value,) in conn.execute(query):
                found.update(json_strings(value))
    return found


def warehouse_checksums(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """Row count and a content hash of every table of a DuckDB database."""
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    return {t: con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {quote_ident(t)}").fetchall() for t in tables}


def serving_checksums(url: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """An md5 of the ordered rows of every public table but ``exclude``, in PostgreSQL."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
            if r[0] not in exclude
        ]
        return {
            t: conn.execute(
                f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {quote_ident(t)} AS x"
            ).fetchone()[0]
            for t in tables
        }
