"""Retention in the warehouse: quarantined rows, raw events and evaluation history (no Dagster)."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from ..sqlutil import scalar

# table -> timestamp column that ages its rows
AGED_TABLES: dict[str, str] = {
    "quarantine": "quarantined_at",
    "raw_interactions": "occurred_at",
    "eval_history": "computed_at",
}


def retention_period(days: float) -> timedelta | None:
    """A configured retention in days as a period; 0 (or less) means keep everything (``None``)."""
    return timedelta(days=days) if days > 0 else None


def purge_warehouse(con: duckdb.DuckDBPyConnection, now: datetime, keep: dict[str, timedelta | None]) -> dict[str, int]:
    """Delete rows older than ``now - keep[table]`` (``None`` keeps all); return rows deleted per table."""
    existing = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    deleted: dict[str, int] = {}
    for table, column in AGED_TABLES.items():
        age = keep.get(table)
        if age is None or table not in existing:
            deleted[table] = 0
            continue
        deleted[table] = scalar(con, f"DELETE FROM {table} WHERE {column} < ?", [now - age])  # returns the count
    return deleted


def log_retention(con: duckdb.DuckDBPyConnection, ran_at: datetime, deleted: dict[str, int]) -> None:
    """Append one cleanup's counts to ``retention_log`` (read by the privacy report)."""
    con.execute("CREATE TABLE IF NOT EXISTS retention_log (ran_at TIMESTAMP, target VARCHAR, rows_deleted BIGINT)")
    con.executemany("INSERT INTO retention_log VALUES (?, ?, ?)", [[ran_at, t, n] for t, n in sorted(deleted.items())])
