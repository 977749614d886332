"""Small SQL helpers shared by the pure modules."""

from __future__ import annotations

from typing import Any

import duckdb
import psycopg


def scalar(con: duckdb.DuckDBPyConnection | psycopg.Connection, sql: str, params: Any = None) -> Any:
    """First column of the first row of ``sql`` on DuckDB or PostgreSQL (the whole result is consumed)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether DuckDB ``con`` has a table or view ``name`` (temporary ones included)."""
    return bool(scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (DuckDB and PostgreSQL), safe for any string."""
    return '"' + str(name).replace('"', '""') + '"'


def limit_memory(con: duckdb.DuckDBPyConnection, limit: str | None) -> None:
    """Cap DuckDB's buffer memory on ``con`` at ``limit`` (a validated size such as ``6GB``);
    beyond it, sorts, joins and aggregates spill to disk. ``None`` keeps DuckDB's default, 80% of RAM."""
    if limit:
        con.execute(f"SET memory_limit = '{limit}'")
