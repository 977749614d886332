"""Great Expectations suites that keep PII out of what the pipeline publishes (no Dagster).

Each suite runs on a table's *text surface*: a DataFrame with the table's columns, where
every text column holds its distinct string values and every nested column (MAP, STRUCT,
LIST, JSON) its distinct JSON object keys and JSON string values, all normalised
(:func:`~.pii.normalise`) and padded with nulls; numeric and temporal columns stay
empty (numbers are never compared with raw values, see :mod:`.pii`). Expectations:

* the table's column set equals the allowlist, where one is given (``user_features``);
* no value matches a PII pattern (:data:`~.pii.PII_PATTERNS`, one expectation per kind);
* no value equals a raw PII value of the users file (:class:`~.pii.RawPii`).

Failures are reported with masked examples only (:func:`~.pii.mask`); raw values are
never returned, logged or stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig

from ..sqlutil import quote_ident, scalar
from .allowlist import FEATURE_COLUMNS
from .pii import PII_PATTERNS, RawPii, mask, normalise

PUBLISHED_TABLES: dict[str, tuple[str, ...] | None] = {
    "stg_items": None,  # catalog text: categories become feature keys, titles reach consumers
    "user_features": ("user_id", *FEATURE_COLUMNS),
    "user_rankings": None,
    "global_rankings": None,
}
"""Warehouse tables whose content is published, with the exact column set required (None: any)."""

MAX_EXAMPLES = 3
_NESTED_PREFIXES = ("MAP(", "STRUCT(", "UNION(", "JSON")


@dataclass(frozen=True)
class Failure:
    """One failed expectation: where, which rule, how many values, a few masked examples."""

    column: str
    check: str
    count: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        examples = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.column}: {self.check} ({self.count}{examples})"


@dataclass(frozen=True)
class SuiteResult:
    """Outcome of one table's privacy suite."""

    table: str
    rows: int
    values: int
    failures: tuple[Failure, ...]

    @property
    def success(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        """One line: what was scanned and, on failure, each failure with masked examples."""
        scanned = f"{self.table}: {self.rows} rows, {self.values} distinct strings"
        if self.success:
            return f"{scanned}, no PII found"
        return f"{scanned}, {len(self.failures)} failed: " + "; ".join(map(str, self.failures))


def _is_nested(duckdb_type: str) -> bool:
    return duckdb_type.startswith(_NESTED_PREFIXES) or duckdb_type.endswith("]")


def text_surface(con: duckdb.DuckDBPyConnection, table: str) -> tuple[pd.DataFrame, list[str]]:
    """The table's text surface (see module doc) and the names of its text and nested columns."""
    source = quote_ident(table)
    columns = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {source})").fetchall()
    values: dict[str, list[str]] = {}
    for name, duckdb_type in columns:
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
        values[name] = sorted({normalise(v) for (v,) in con.execute(sql).fetchall() if v is not None})
    # Series of unequal lengths align on the index: shorter columns are padded with nulls.
    frame = pd.DataFrame({name: pd.Series(values.get(name, []), dtype=object) for name, _ in columns})
    return frame, list(values)


def build_suite(
    name: str, surface: pd.DataFrame, text_columns: list[str], raw: RawPii, exact_columns: tuple[str, ...] | None
) -> gx.ExpectationSuite:
    """The privacy suite for one table's text surface."""
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
    examples = tuple(dict.fromkeys(mask(str(v)) for v in details.get("partial_unexpected_list", [])))
    return Failure(column, check, int(details.get("unexpected_count", 0)), examples[:MAX_EXAMPLES])


def validate_table(con: duckdb.DuckDBPyConnection, table: str, raw: RawPii) -> SuiteResult:
    """Run the privacy suite of ``table`` (a key of :data:`PUBLISHED_TABLES`) on the warehouse."""
    surface, text_columns = text_surface(con, table)
    suite = build_suite(table, surface, text_columns, raw, PUBLISHED_TABLES[table])
    failures = run_suite(suite, surface)
    rows = scalar(con, f"SELECT count(*) FROM {quote_ident(table)}")
    return SuiteResult(table, rows, int(surface[text_columns].count().sum()), failures)
