"""Small SQL helpers shared by the pure modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal (DuckDB and PostgreSQL)."""
    return "'" + text.replace("'", "''") + "'"


def limit_memory(con: duckdb.DuckDBPyConnection, limit: str, spill_dir: Path | None = None) -> None:
    """Cap DuckDB's buffer memory on ``con`` at ``limit`` (a validated size such as ``6GB``, or a
    share of RAM such as ``25%``); beyond it, sorts, joins and aggregates spill to ``spill_dir``
    (default: beside the database file, or ``.tmp`` in the working directory for an in-memory one)."""
    con.execute(f"SET memory_limit = {quote_literal(limit)}")
    if spill_dir is not None:
        con.execute(f"SET temp_directory = {quote_literal(str(spill_dir))}")


@dataclass(frozen=True)
class TableDescription:
    """A relation's rows (None for a view: counting it would run it) and (column, type) pairs."""

    rows: int | None
    columns: list[tuple[str, str]]


def describe_tables(
    con: duckdb.DuckDBPyConnection, names: list[str], schema: str = "main"
) -> dict[str, TableDescription]:
    """The tables and views of ``schema`` among ``names``: row count (tables) and column types in order."""
    relations = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name IN (SELECT unnest(?::VARCHAR[])) ORDER BY table_name",
        [schema, names],
    ).fetchall()
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, type_ in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
        "AND table_name IN (SELECT unnest(?::VARCHAR[])) ORDER BY table_name, ordinal_position",
        [schema, names],
    ).fetchall():
        columns.setdefault(table, []).append((column, type_))

    def rows(name: str, kind: str) -> int | None:  # counting a view would run it
        return (
            scalar(con, f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}")
            if kind == "BASE TABLE"
            else None
        )

    return {name: TableDescription(rows(name, kind), columns.get(name, [])) for name, kind in relations}
