"""Shared fixtures: a throw-away PostgreSQL database for the whole test session.

With ``PERSONALIZATION_TEST_DATABASE_URL`` set (e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``) a fresh database is created on that
server; otherwise an embedded ``pgserver`` is started in a temporary directory.
Either way the database is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from personalization_pipeline.serving.database import (
    normalize_url,
    start_embedded_server,
    stop_embedded_server,
    with_database,
)
from personalization_pipeline.serving.schema import ensure_schema


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a session-private PostgreSQL database."""
    server_url = os.environ.get("PERSONALIZATION_TEST_DATABASE_URL")
    pg_dir = None
    if server_url:
        server_url = normalize_url(server_url)
    else:
        pg_dir = tmp_path_factory.mktemp("pg") / "data"
        server_url = start_embedded_server(pg_dir)
    dbname = f"pp_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield with_database(server_url, dbname)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        if pg_dir is not None:
            stop_embedded_server(pg_dir)


@pytest.fixture(scope="session")
def reset_pg(pg_url: str) -> Callable[[], str]:
    """Callable that empties the session database (fresh serving schema) and returns its URL."""

    def reset() -> str:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            ensure_schema(conn)
        return pg_url

    return reset


@pytest.fixture
def clean_pg(reset_pg: Callable[[], str]) -> str:
    """``pg_url`` with empty serving tables, for one test."""
    return reset_pg()
