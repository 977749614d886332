"""Small SQL helpers shared by the pure modules."""

from __future__ import annotations

from typing import Any

import duckdb
import psycopg


def scalar(con: duckdb.DuckDBPyConnection | psycopg.Connection, sql: str, params: Any = None) -> Any:
    """First column of the first row of ``sql`` on DuckDB or PostgreSQL (the whole result is consumed)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (DuckDB and PostgreSQL), safe for any string."""
    return '"' + str(name).replace('"', '""') + '"'
