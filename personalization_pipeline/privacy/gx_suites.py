"""Great Expectations suites that keep PII out of what the pipeline publishes (no Dagster).

Each suite runs on a table's *text surface*: a DataFrame with the table's columns, where
every text column holds its distinct string values and every nested column (MAP, STRUCT,
LIST, JSON) its distinct JSON object keys and JSON string values, all normalised
(:func:`~.pii.normalise`) and padded with nulls; numeric and temporal columns stay
empty (numbers are never compared with raw values, see :mod:`.pii`). Expectations:

* the table's column set equals the allowlist, where one is given (``user_features``);
* no value matches a PII pattern (:data:`~.pii.PII_PATTERNS`, one expectation per kind);
* no value equals a raw PII value of the users file (:class:`~.pii.RawPii`).

Values an operator allowlisted (:func:`~.pii.operator_allowlist`) are taken out of the surface
first, and counted. Failures are reported with masked examples only (:func:`~.pii.mask`), plus
the ids of the items that carry them where the table has an ``item_id`` column; raw values
are never returned, logged or stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from ..sqlutil import quote_ident, scalar
from .allowlist import FEATURE_COLUMNS
from .catalog import SERVED_COLUMNS, UNSERVED_COLUMNS
from .pii import PII_PATTERNS, RawPii, mask, normalise

if TYPE_CHECKING:  # imported where used: GX takes seconds to import, and every step process loads this module
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult


@dataclass(frozen=True)
class Scan:
    """What one privacy check scans: a table, its text columns (None: every one) and the exact
    column set the table must have (None: any)."""

    table: str
    columns: tuple[str, ...] | None = None
    exact_columns: tuple[str, ...] | None = None


SERVED_SCANS: tuple[Scan, ...] = (
    Scan("stg_items", SERVED_COLUMNS),  # item ids and scopes reach the rankings, categories the features
    Scan("user_features", exact_columns=("user_id", *FEATURE_COLUMNS)),
    Scan("user_rankings"),
    Scan("global_rankings"),
    Scan("similar_users"),
)
"""Everything whose values reach a serving table: a finding here blocks the publish."""

UNSERVED_SCANS: tuple[Scan, ...] = (Scan("stg_items", UNSERVED_COLUMNS),)
"""Catalogue columns that stay in the warehouse: findings are reported, nothing is blocked."""

MAX_EXAMPLES = 3
MAX_ITEMS = 10
_CATALOG_COLUMNS = frozenset((*SERVED_COLUMNS, *UNSERVED_COLUMNS))  # failures there are named by item
_NESTED_PREFIXES = ("MAP(", "STRUCT(", "UNION(", "JSON")


@dataclass(frozen=True)
class Failure:
    """One failed expectation: where, which rule, how many values, a few masked examples."""

    column: str
    check: str
    count: int
    examples: tuple[str, ...]
    items: tuple[str, ...] = ()  # ids of items carrying a failing value (item ids are not personal data)
    _unexpected: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # never shown

    def __str__(self) -> str:
        examples = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        items = f"; items {', '.join(self.items)}" if self.items else ""
        return f"{self.column}: {self.check} ({self.count}{examples}{items})"


@dataclass(frozen=True)
class SuiteResult:
    """Outcome of one table's privacy suite."""

    table: str
    rows: int
    values: int
    failures: tuple[Failure, ...]
    allowed: int = 0  # values taken out of the scan because an operator allowlisted them

    @property
    def success(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        """One line: what was scanned and, on failure, each failure with masked examples."""
        allowed = f" ({self.allowed} allowlisted)" if self.allowed else ""
        scanned = f"{self.table}: {self.rows} rows, {self.values} distinct strings{allowed}"
        if self.success:
            return f"{scanned}, no PII found"
        return f"{scanned}, {len(self.failures)} failed: " + "; ".join(map(str, self.failures))


def _is_nested(duckdb_type: str) -> bool:
    return duckdb_type.startswith(_NESTED_PREFIXES) or duckdb_type.endswith("]")


def text_surface(
    con: duckdb.DuckDBPyConnection, scan: Scan, allow: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, list[str], int]:
    """The scanned columns' text surface (see module doc) without allowlisted values, the names of
    its text and nested columns, and how many distinct values the allowlist took out."""
    source = quote_ident(scan.table)
    columns = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {source})").fetchall()
    values: dict[str, list[str]] = {}
    allowed = 0
    for name, duckdb_type in columns:
        if scan.columns is not None and name not in scan.columns:
            continue
        column = quote_ident(name)
        if duckdb_type == "VARCHAR":
            sql = f"SELECT DISTINCT {column} FROM {source} WHERE {column} IS NOT NULL"
        elif _is_nested(duckdb_type):
            sql = (
                f"SELECT DISTINCT CASE WHEN j.type = 'VARCHAR' THEN j.atom ->> '$' ELSE j.key END "
                f"FROM {source}, json_tree(to_json({column})) j "
                f"WHERE j.type = 'VARCHAR' OR (j.key IS NOT NULL AND NOT suffix(j.fullkey, ']'))"
            )
        else:
            continue
        found = {normalise(v) for (v,) in con.execute(sql).fetchall() if v is not None}
        allowed += len(found & allow)
        values[name] = sorted(found - allow)
    # Series of unequal lengths align on the index: shorter columns are padded with nulls.
    frame = pd.DataFrame({name: pd.Series(values.get(name, []), dtype=object) for name, _ in columns})
    return frame, list(values), allowed


def build_suite(
    name: str, surface: pd.DataFrame, text_columns: list[str], raw: RawPii, exact_columns: tuple[str, ...] | None
) -> gx.ExpectationSuite:
    """The privacy suite for one table's text surface."""
    import great_expectations as gx

    expectations: list[gx.expectations.Expectation] = []
    if exact_columns is not None:
        expectations.append(
            gx.expectations.ExpectTableColumnsToMatchSet(
                column_set=list(exact_columns), exact_match=True, meta={"check": "columns equal the allowlist"}
            )
        )
    for column in text_columns:
        expectations.extend(
            gx.expectations.ExpectColumnValuesToNotMatchRegex(
                column=column, regex=pattern, meta={"check": f"{kind} pattern"}
            )
            for kind, pattern in PII_PATTERNS.items()
        )
        # Only raw values present in the column can be unexpected, so the set is cut to those:
        # same outcome, and the expectation stays small however large the users file is.
        present = sorted(raw.values.intersection(surface[column].dropna()))
        expectations.append(
            gx.expectations.ExpectColumnValuesToNotBeInSet(
                column=column, value_set=present, meta={"check": "raw PII value"}
            )
        )
    return gx.ExpectationSuite(name=f"privacy_{name}", expectations=expectations)


def run_suite(suite: gx.ExpectationSuite, frame: pd.DataFrame) -> tuple[Failure, ...]:
    """Validate ``frame`` against ``suite`` in an ephemeral context; the failures, masked."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("warehouse")
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    return tuple(_failure(r) for r in batch.validate(suite).results if not r.success)


def _failure(result: ExpectationValidationResult) -> Failure:
    config = result.expectation_config
    assert config is not None  # GX sets it on every result of a suite run
    check = (config.meta or {}).get("check", config.type)
    column = config.kwargs.get("column", "(columns)")
    details = result.result or {}
    errors = [e for e in (result.exception_info or {}).values() if isinstance(e, dict) and e.get("raised_exception")]
    if errors:  # only the message: the metric ids around it carry the expectation's values
        return Failure(column, f"{check}: could not run: {str(errors[0].get('exception_message'))[:200]}", 0, ())
    if "mismatched" in details.get("details", {}):  # column names, not values: shown as they are
        mismatched = details["details"]["mismatched"]
        names = tuple(f"+{c}" for c in mismatched.get("unexpected", [])) + tuple(
            f"-{c}" for c in mismatched.get("missing", [])
        )
        return Failure(column, check, len(names), names)
    unexpected = tuple(str(v) for v in details.get("partial_unexpected_list", []))  # the first 20
    examples = tuple(dict.fromkeys(mask(v) for v in unexpected))
    count = int(details.get("unexpected_count", 0))
    return Failure(column, check, count, examples[:MAX_EXAMPLES], _unexpected=frozenset(unexpected))


def _items_with(con: duckdb.DuckDBPyConnection, table: str, failure: Failure) -> tuple[str, ...]:
    """Ids of the items whose ``failure.column`` holds one of its failing values (in memory only)."""
    pairs = con.execute(
        f"SELECT DISTINCT CAST(item_id AS VARCHAR), CAST({quote_ident(failure.column)} AS VARCHAR) "
        f"FROM {quote_ident(table)} WHERE {quote_ident(failure.column)} IS NOT NULL ORDER BY 1"
    ).fetchall()
    items = dict.fromkeys(item for item, value in pairs if normalise(value) in failure._unexpected)
    return tuple(items)[:MAX_ITEMS]


def validate_table(
    con: duckdb.DuckDBPyConnection, scan: Scan, raw: RawPii, allow: frozenset[str] = frozenset()
) -> SuiteResult:
    """Run the privacy suite of ``scan`` on the warehouse, naming the items behind each failure in a
    catalogue column (a failing user id names no item: it is the user's own value)."""
    surface, text_columns, allowed = text_surface(con, scan, allow)
    suite = build_suite(scan.table, surface, text_columns, raw, scan.exact_columns)
    failures = run_suite(suite, surface)
    columns = {r[0] for r in con.execute(f"SELECT column_name FROM (DESCRIBE {quote_ident(scan.table)})").fetchall()}
    if "item_id" in columns:
        failures = tuple(
            replace(f, items=_items_with(con, scan.table, f)) if f.column in _CATALOG_COLUMNS else f for f in failures
        )
    rows = scalar(con, f"SELECT count(*) FROM {quote_ident(scan.table)}")
    return SuiteResult(scan.table, rows, int(surface[text_columns].count().sum()), failures, allowed)
