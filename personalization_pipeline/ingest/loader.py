"""Load raw files into the DuckDB warehouse: allowlisted columns, typed, bad rows quarantined.

Each contract table lands in ``raw_<table>`` with only its contract columns (extra
columns, PII included, never enter the warehouse). Ids are canonicalised the same way in
every table (:mod:`ids`). Rows that break the contract go to ``quarantine`` with a reason;
they are counted, never silently dropped. Settings fail closed (:mod:`privacy.consent`).
An input that leaves no usable interaction stops the load before anything is committed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from ..ids import CANONICAL_ID_MACRO, CLEAN_TEXT_MACRO
from ..privacy import consent
from ..sqlutil import quote_ident, scalar
from .contract import CONTRACTS, SUPPORTED_EXTENSIONS, TableContract
from .encoding import utf8_csv
from .errors import InputError
from .mapping import TableMapping
from .validation import PARSE_BOOL_MACRO, PARSE_TS_MACRO, RULES

LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS quarantine (batch_id VARCHAR, table_name VARCHAR, source_file VARCHAR, "
    "reason VARCHAR, row_json VARCHAR, quarantined_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS ingest_batches (batch_id VARCHAR, table_name VARCHAR, source_file VARCHAR, "
    "rows BIGINT, quarantined BIGINT, expired BIGINT, dropped_columns VARCHAR[], loaded_at TIMESTAMP)",
)


@dataclass(frozen=True)
class IngestOptions:
    """How strict a load is: the clock, future tolerance, unknown items, and raw-event retention."""

    now: datetime
    future_tolerance: timedelta = timedelta(hours=1)
    strict_items: bool = False
    raw_retention: timedelta | None = None  # events older than now - raw_retention are not loaded
    encoding: str = "utf-8"  # of CSV files


@dataclass
class IngestReport:
    """What one ingest did: files read, rows kept, rows quarantined by reason, columns dropped."""

    batch_id: str
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)
    expired: int = 0
    newest_expired: datetime | None = None
    consent_fail_closed: dict[str, int] = field(default_factory=dict)  # users opted out, by cause

    @property
    def quarantined_total(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())


def find_source(data_dir: Path, contract: TableContract, mapping: TableMapping) -> Path | None:
    """The file holding ``contract``'s table, or None when an optional table has none."""
    if mapping.file:
        path = data_dir / mapping.file
        if not path.is_file():
            raise InputError(path, f"file for table '{contract.name}' named in the mapping does not exist")
        return path
    found = [data_dir / f"{contract.name}{ext}" for ext in SUPPORTED_EXTENSIONS]
    found = [path for path in found if path.is_file()]
    if len(found) > 1:
        raise InputError(found[0], f"ambiguous: both {' and '.join(p.name for p in found)} exist; keep one")
    if found:
        return found[0]
    if contract.mandatory:
        raise InputError(
            data_dir / f"{contract.name}.csv",
            f"required table '{contract.name}' not found (looked for {contract.name}.parquet / .csv)",
        )
    return None


def _read_source(con: duckdb.DuckDBPyConnection, path: Path, encoding: str, workdir: Path) -> None:
    """Expose ``path`` as temp view ``src`` of VARCHAR columns; malformed CSV lines go to ``reject_errors``
    when it is read."""
    readable = path if path.suffix == ".parquet" else utf8_csv(path, encoding, workdir)
    try:
        if path.suffix == ".parquet":
            relation = con.read_parquet(str(readable))
        else:
            relation = con.sql(
                "SELECT * FROM read_csv(?, header=true, all_varchar=true, ignore_errors=true, "
                "store_rejects=true, rejects_table='reject_errors', rejects_scan='reject_scans')",
                params=[str(readable)],
            )
        columns = relation.columns
        casts = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns)
        # Landed whole first, in file order (a parallel read keeps it): its row ids are the rows'
        # positions, so the rules' query runs on all cores (numbering rows in a query serialises it).
        relation.project(casts).create_view("src_rel", replace=True)
        con.execute("CREATE OR REPLACE TEMP TABLE src_landed AS SELECT * FROM src_rel")
        con.execute("CREATE OR REPLACE TEMP VIEW src AS SELECT rowid + 1 AS src_row, * FROM src_landed")
    except duckdb.Error as exc:
        raise InputError(path, f"unreadable file: {exc}") from exc


def _select_contract_columns(
    con: duckdb.DuckDBPyConnection, path: Path, contract: TableContract, mapping: TableMapping
) -> list[str]:
    """Rename per mapping, check required columns, expose the contract columns as temp view
    ``src_contract`` (cleaned on the way into the rules' query, not stored again); return the
    source columns left out."""
    present = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE src)").fetchall()]
    present.remove("src_row")
    for source in mapping.columns:
        if source not in present:
            raise InputError(path, "column named in the mapping is missing from the file", source)
    renamed = {c: mapping.columns.get(c, c) for c in present}
    by_target = {target: source for source, target in renamed.items() if target in contract.columns}
    for column in contract.required:
        if column not in by_target and column not in mapping.defaults:
            raise InputError(path, f"required column missing (has: {', '.join(present)})", column)
    selects = ["src_row"]
    for column in contract.columns:
        if column in by_target:
            clean = "canonical_id" if column in contract.id_columns else "clean_text"
            selects.append(f"{clean}({quote_ident(by_target[column])}) AS {column}")
        elif column in mapping.defaults:
            selects.append(f"{_quote(mapping.defaults[column])} AS {column}")
        else:
            selects.append(f"CAST(NULL AS VARCHAR) AS {column}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW src_contract AS SELECT {', '.join(selects)} FROM src")
    return sorted(c for c in present if renamed[c] not in contract.columns)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _empty_table(con: duckdb.DuckDBPyConnection, contract: TableContract) -> None:
    cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in contract.columns)
    con.execute(f"CREATE OR REPLACE TEMP VIEW src_contract AS SELECT 0::BIGINT AS src_row, {cols} LIMIT 0")


def _quarantine_malformed_lines(con, batch_id: str, table: str, path: Path, now: datetime) -> int:
    exists = scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'reject_errors'")
    if not exists:
        return 0
    con.execute(
        # The line's text is not kept: it may hold values of columns the allowlist drops (PII).
        "INSERT INTO quarantine SELECT ?, ?, ?, 'malformed_line', to_json({line: line, error: error}), ? "
        "FROM (SELECT line, string_agg(DISTINCT error_message, '; ' ORDER BY error_message) AS error "
        "FROM reject_errors GROUP BY line ORDER BY line)",
        [batch_id, table, str(path), now],
    )
    count = scalar(con, "SELECT count(DISTINCT line) FROM reject_errors")
    con.execute("DELETE FROM reject_errors; DELETE FROM reject_scans")
    return count


def load_raw_tables(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    mapping: dict[str, TableMapping],
    options: IngestOptions,
    settings_override: pd.DataFrame | None = None,
) -> IngestReport:
    """Load every contract table from ``data_dir`` into ``raw_<table>``; return the report.

    ``settings_override`` (user_id, personalization_enabled, data_sharing_consent,
    updated_at) comes from the serving database and wins over the settings file.
    Raises :class:`InputError` before writing any ``raw_`` table when a file is
    missing, unreadable or lacks a required column.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(data_dir, "data directory does not exist")
    batch_id = options.now.strftime("%Y%m%dT%H%M%S%f")
    report = IngestReport(batch_id=batch_id)
    con.execute("SET TimeZone = 'UTC'")
    for macro in (CLEAN_TEXT_MACRO, CANONICAL_ID_MACRO, PARSE_TS_MACRO, PARSE_BOOL_MACRO):
        con.execute(macro)
    for statement in LOG_DDL:
        con.execute(statement)
    order = ["items", "interactions", "users", "settings"]  # items first: strict mode checks against them
    sources = {name: find_source(data_dir, CONTRACTS[name], mapping.get(name, TableMapping())) for name in order}
    con.execute("BEGIN TRANSACTION")
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-") as workdir:
            for name in order:
                table_mapping = mapping.get(name, TableMapping())
                _load_one(con, report, name, sources[name], table_mapping, options, Path(workdir), settings_override)
                if name == "interactions":
                    _require_usable_interactions(report, sources[name], options)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def _require_usable_interactions(report: IngestReport, path: Path | None, options: IngestOptions) -> None:
    """Stop the load when nothing usable is left of the interactions file, saying why."""
    if report.rows["interactions"]:
        return
    quarantined = report.quarantined.get("interactions", {})
    if report.expired:
        days = options.raw_retention.days if options.raw_retention else 0
        newest = f"{report.newest_expired:%Y-%m-%d}" if report.newest_expired else "unknown"
        raise InputError(
            path,
            f"all {report.expired} events are older than the raw-event retention of {days} days "
            f"(newest event {newest}); set PERSONALIZATION_RAW_RETENTION_DAYS=0 to keep every event, "
            "or to a number of days that covers the export",
        )
    if quarantined:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(quarantined.items()))
        raise InputError(path, f"every row was quarantined ({reasons}); no usable interaction is left")
    raise InputError(path, "the file has no data rows; no usable interaction is left")


def _resolve_settings(con: duckdb.DuckDBPyConnection, report: IngestReport, database: pd.DataFrame | None) -> None:
    """One fail-closed settings row per user: the file's rows, then the serving database's on top."""
    con.execute(consent.RESOLVE_FILE_SQL)
    if database is not None and len(database):
        con.register("settings_override_df", database)
        con.execute(consent.APPLY_DATABASE_SQL)
        con.unregister("settings_override_df")
    report.consent_fail_closed = dict(
        con.execute(
            "SELECT fail_closed, count(*) FROM raw_settings WHERE fail_closed IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )


def _load_one(con, report, name, path, table_mapping, options: IngestOptions, workdir: Path, settings_override):
    contract = CONTRACTS[name]
    if path is None:
        _empty_table(con, contract)
    else:
        _read_source(con, path, options.encoding, workdir)
        report.files[name] = str(path)
        report.dropped_columns[name] = _select_contract_columns(con, path, contract, table_mapping)
    now = options.now
    params = (
        {"horizon": now + options.future_tolerance, "strict": options.strict_items} if name == "interactions" else None
    )
    con.execute(RULES[name].sql(), params)
    con.execute(
        # No ORDER BY: sorting 50M rows into file order cost a sixth of the load, and no reader needs it.
        f"CREATE OR REPLACE TABLE raw_{name} AS SELECT * EXCLUDE (src_row, row_json, reason) FROM checked "
        "WHERE reason IS NULL"
    )
    if name == "settings":
        _resolve_settings(con, report, settings_override)
    con.execute(
        "INSERT INTO quarantine SELECT ?, ?, ?, reason, row_json, ? FROM checked "
        "WHERE reason IS NOT NULL ORDER BY src_row",
        [report.batch_id, name, str(path) if path else None, now],
    )
    counts = dict(
        con.execute(
            "SELECT reason, count(*) FROM checked WHERE reason IS NOT NULL GROUP BY reason ORDER BY reason"
        ).fetchall()
    )
    if path is not None and path.suffix == ".csv":
        malformed = _quarantine_malformed_lines(con, report.batch_id, name, path, now)
        if malformed:
            counts["malformed_line"] = malformed
    if name == "interactions" and options.raw_retention is not None:
        cutoff = now - options.raw_retention
        report.newest_expired = scalar(
            con, "SELECT max(occurred_at) FROM raw_interactions WHERE occurred_at < ?", [cutoff]
        )
        report.expired = scalar(con, "DELETE FROM raw_interactions WHERE occurred_at < ?", [cutoff])  # the count
    report.quarantined[name] = counts
    report.rows[name] = scalar(con, f"SELECT count(*) FROM raw_{name}")
    con.execute(
        "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.batch_id,
            name,
            str(path) if path else None,
            report.rows[name],
            sum(counts.values()),
            report.expired if name == "interactions" else 0,
            report.dropped_columns.get(name, []),
            now,
        ],
    )
    con.execute(
        "DROP TABLE IF EXISTS checked; DROP VIEW IF EXISTS src_contract; "
        "DROP VIEW IF EXISTS src; DROP TABLE IF EXISTS src_landed; DROP VIEW IF EXISTS src_rel"
    )
