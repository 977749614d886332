"""The privacy report: what the pipeline withheld, dropped, generalised and deleted (no Dagster)."""

from __future__ import annotations

import duckdb

from ..sqlutil import has_table, scalar
from .allowlist import QUASI_IDENTIFIERS
from .k_anonymity import OTHER


def privacy_report(con: duckdb.DuckDBPyConnection, allow: frozenset[str] = frozenset()) -> dict[str, object]:
    """Counts from the latest ingest, catalogue screening, dbt, features and cleanup in the warehouse;
    the operator's allowlist (``allow``) and the catalogue values it let through."""
    report: dict[str, object] = {
        "opted_out_users": scalar(con, "SELECT count(*) FROM stg_settings WHERE NOT personalization_enabled"),
        "opted_out_events_excluded": scalar(
            con,
            "SELECT count(*) FROM stg_interactions i JOIN stg_settings s USING (user_id) "
            "WHERE NOT s.personalization_enabled",
        ),
        "opted_out_fail_closed": scalar(con, "SELECT count(*) FROM raw_settings WHERE fail_closed IS NOT NULL"),
        "users_with_features": scalar(con, "SELECT count(*) FROM user_features"),
    }
    if has_table(con, "catalog_findings"):
        report["catalog_items_withheld"] = scalar(con, "SELECT count(*) FROM withheld_items")
        report["catalog_findings_in_unserved_columns"] = scalar(
            con, "SELECT count(*) FROM catalog_findings WHERE NOT served"
        )
        hits = con.execute(
            "SELECT allowed_value, string_agg(DISTINCT item_id || ' (' || column_name || ')', ', ' ORDER BY "
            "item_id || ' (' || column_name || ')') FROM catalog_findings WHERE allowed GROUP BY 1 ORDER BY 1"
        ).fetchall()
    else:
        hits = []
    passed = dict(hits)
    report["allowlisted_by_operator"] = {value: passed.get(value, "no match this run") for value in sorted(allow)}
    dropped = con.execute(
        "SELECT table_name, dropped_columns FROM ingest_batches "
        "WHERE batch_id = (SELECT max(batch_id) FROM ingest_batches) ORDER BY table_name"
    ).fetchall()
    report["columns_dropped_at_ingest"] = {table: list(columns) for table, columns in dropped if columns}
    report["columns_dropped_count"] = sum(len(columns) for _, columns in dropped)
    report["generalised_to_other"] = {
        name: scalar(con, f"SELECT count(*) FROM user_features WHERE {name} = ?", [OTHER]) for name in QUASI_IDENTIFIERS
    }
    if has_table(con, "retention_log"):
        rows = con.execute(
            "SELECT target, rows_deleted FROM retention_log "
            "WHERE ran_at = (SELECT max(ran_at) FROM retention_log) ORDER BY target"
        ).fetchall()
        report["deleted_by_last_retention_cleanup"] = dict(rows)
        report["last_retention_cleanup"] = str(scalar(con, "SELECT max(ran_at) FROM retention_log"))
    else:
        report["deleted_by_last_retention_cleanup"] = {}
        report["last_retention_cleanup"] = "never"
    return report


def report_markdown(report: dict[str, object]) -> str:
    """The report as a two-column Markdown table."""
    lines = ["| what | value |", "|---|---|"]
    for key, value in report.items():
        shown = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"| {key.replace('_', ' ')} | {shown if shown != '' else '-'} |")
    return "\n".join(lines)
