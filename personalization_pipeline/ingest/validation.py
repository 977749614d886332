"""Typing and row checks per raw table, as DuckDB SQL over the temp table ``src_contract``.

Each table's rules produce the temp table ``checked``: typed contract columns, the source
row number, a ``reason`` that is NULL for good rows and names the first rule a bad row broke,
and for bad rows the raw row as JSON (``row_json``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ids import MAX_ID_LENGTH

# ISO-8601 (any offset, normalised to UTC) or Unix epoch seconds (milliseconds above 1e11).
PARSE_TS_MACRO = r"""
CREATE OR REPLACE TEMP MACRO parse_ts(x) AS CASE
    WHEN x IS NULL THEN NULL
    WHEN regexp_full_match(x, '-?[0-9]+(\.[0-9]+)?') THEN
        CASE WHEN abs(x::DOUBLE) > 1e11 THEN make_timestamp((x::DOUBLE * 1e3)::BIGINT)
             ELSE make_timestamp((x::DOUBLE * 1e6)::BIGINT) END
    ELSE try_cast(try_cast(x AS TIMESTAMPTZ) AS TIMESTAMP)
END
"""
TRUE_SPELLINGS = ("true", "t", "yes", "y", "on", "1")
FALSE_SPELLINGS = ("false", "f", "no", "n", "off", "0")
"""Accepted boolean spellings, case-insensitive and trimmed (``1.0`` counts as ``1``); anything else is unreadable."""


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


PARSE_BOOL_MACRO = f"""
CREATE OR REPLACE TEMP MACRO parse_bool(x) AS CASE
    WHEN lower(canonical_id(x)) IN ({_in(TRUE_SPELLINGS)}) THEN TRUE
    WHEN lower(canonical_id(x)) IN ({_in(FALSE_SPELLINGS)}) THEN FALSE
END
"""
QUARANTINED_TEXT_CHARS = 1000
"""A quarantined row keeps at most this many characters of each value (a 1 MB id is evidence enough cut short)."""


@dataclass(frozen=True)
class TableRules:
    """Typed columns, row rules (condition -> reason, first match wins) and the dedup key."""

    columns: dict[str, str]
    rules: tuple[tuple[str, str], ...]
    unique_key: tuple[str, ...]
    keep_first_by: str = "src_row"
    duplicate_reason: str = "duplicate"

    def sql(self) -> str:
        """SQL creating ``checked`` from ``src_contract``.

        Duplicates are found in two steps: rows whose key hash repeats (a cheap aggregate over
        a number per row), then an exact ranking by key within those rows only (a hash collision
        costs time, never a wrong verdict)."""
        typed = ",\n    ".join(f"{expr} AS {name}" for name, expr in self.columns.items())
        raw = ", ".join(f"{name}: left({name}__raw, {QUARANTINED_TEXT_CHARS})" for name in self.columns)
        cases = "\n        ".join(f"WHEN {cond} THEN '{reason}'" for cond, reason in self.rules)
        key = ", ".join(self.unique_key)
        return f"""
CREATE OR REPLACE TEMP TABLE checked AS
WITH typed AS (
    SELECT src_row,
    {typed},
    {", ".join(f"{name} AS {name}__raw" for name in self.columns)}
    FROM src_contract
), first_pass AS MATERIALIZED (
    SELECT *, CASE
        {cases}
    END AS reason, hash({key}) AS key_hash FROM typed
), repeated AS (
    SELECT key_hash FROM first_pass WHERE reason IS NULL GROUP BY key_hash HAVING count(*) > 1
), superseded AS (
    SELECT src_row FROM (
        SELECT src_row, row_number() OVER (PARTITION BY {key} ORDER BY {self.keep_first_by}, src_row) AS n
        FROM first_pass WHERE reason IS NULL AND key_hash IN (SELECT key_hash FROM repeated))
    WHERE n > 1
), judged AS (
    SELECT * EXCLUDE (reason, key_hash), CASE
        WHEN reason IS NULL AND src_row IN (SELECT src_row FROM superseded) THEN '{self.duplicate_reason}'
        ELSE reason END AS reason
    FROM first_pass
)
SELECT * EXCLUDE ({", ".join(f"{n}__raw" for n in self.columns)}),
    CASE WHEN reason IS NOT NULL THEN to_json({{{raw}}}) END AS row_json
FROM judged
"""


def _null(column: str) -> tuple[str, str]:
    return f"{column} IS NULL", f"null_{column}"


def _unparseable(column: str) -> tuple[str, str]:
    return f"{column}__raw IS NOT NULL AND {column} IS NULL", f"unparseable_{column}"


def _too_long(column: str) -> tuple[str, str]:
    return f"length({column}) > {MAX_ID_LENGTH}", f"too_long_{column}"


SETTINGS_FAIL_CLOSED = (
    "unreadable_personalization_enabled",
    "unreadable_data_sharing_consent",
    "unparseable_updated_at",
)
"""Settings rows quarantined for these reasons still count: their user is opted out for the run."""


RULES: dict[str, TableRules] = {
    "interactions": TableRules(
        columns={
            "user_id": "user_id",
            "item_id": "item_id",
            "occurred_at": "parse_ts(occurred_at)",
            "event_type": "lower(coalesce(event_type, CASE WHEN value IS NOT NULL THEN 'rate' ELSE 'view' END))",
            "value": "try_cast(value AS DOUBLE)",
            "session_id": "session_id",
            "device_type": "lower(device_type)",
        },
        rules=(
            _null("user_id"),
            _null("item_id"),
            _too_long("user_id"),
            _too_long("item_id"),
            ("occurred_at IS NULL", "unparseable_occurred_at"),
            ("occurred_at > $horizon", "future_occurred_at"),
            _unparseable("value"),
            ("$strict AND item_id NOT IN (SELECT item_id FROM raw_items)", "unknown_item"),
        ),
        unique_key=("user_id", "item_id", "occurred_at", "event_type"),
    ),
    "items": TableRules(
        columns={
            "item_id": "item_id",
            "scope": "coalesce(lower(scope), 'default')",
            "category": "category",
            "created_at": "parse_ts(created_at)",
            "approved_at": "parse_ts(approved_at)",
            "title": "title",
        },
        rules=(
            _null("item_id"),
            _too_long("item_id"),
            _too_long("scope"),
            _unparseable("created_at"),
            _unparseable("approved_at"),
        ),
        unique_key=("item_id",),
        duplicate_reason="duplicate_item_id",
    ),
    "users": TableRules(
        columns={
            "user_id": "user_id",
            "signup_at": "parse_ts(signup_at)",
            "country_code": "upper(country_code)",
            "timezone_offset": "try_cast(timezone_offset AS INTEGER)",
            "device_type": "lower(device_type)",
        },
        rules=(_null("user_id"), _too_long("user_id"), _unparseable("signup_at"), _unparseable("timezone_offset")),
        unique_key=("user_id",),
        duplicate_reason="duplicate_user_id",
    ),
    "settings": TableRules(
        columns={
            "user_id": "user_id",
            "personalization_enabled": "parse_bool(personalization_enabled)",
            "data_sharing_consent": "parse_bool(data_sharing_consent)",
            "updated_at": "parse_ts(updated_at)",
        },
        rules=(
            _null("user_id"),
            _too_long("user_id"),
            ("personalization_enabled IS NULL", SETTINGS_FAIL_CLOSED[0]),
            ("data_sharing_consent__raw IS NOT NULL AND data_sharing_consent IS NULL", SETTINGS_FAIL_CLOSED[1]),
            ("updated_at__raw IS NOT NULL AND updated_at IS NULL", SETTINGS_FAIL_CLOSED[2]),
        ),
        unique_key=("user_id",),
        keep_first_by="updated_at DESC NULLS LAST, src_row DESC",
        duplicate_reason="superseded_setting",
    ),
}
