"""Catalogue screening: withhold a doubtful item, never stop the run for it (no Dagster).

Catalogue values are not personal data by nature, but a row may carry some by mistake (an
e-mail address in a category, a customer's name as a title). Every text column of the items
(the items file plus items seen only in interactions) is scanned with the gate's detectors
(:mod:`.pii`: patterns and the raw users file's dropped values, after normalisation):

* a finding in a **served** column (:data:`SERVED_COLUMNS`: item ids and scopes reach the
  rankings, categories become feature keys) withholds the item for this run: staging leaves
  it and its events out, so it is in no ranking, no model and no feature, and it is recorded
  in ``quarantine`` (reason ``withheld_pii``, the value masked);
* a finding in a column that stays in the warehouse (``title``) withholds nothing; it is
  reported (the non-blocking asset check of ``stg_items`` does the same in Great Expectations);
* a value the operator allowlisted (:func:`.pii.operator_allowlist`) is served as it is and
  listed in the privacy report with the items that carry it.

Every finding names the item id, the column and the kind, never the value (masked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from .pii import RawPii, mask, normalise, pii_kinds

SERVED_COLUMNS: tuple[str, ...] = ("item_id", "scope", "category")
UNSERVED_COLUMNS: tuple[str, ...] = ("title",)
RAW_VALUE = "raw users value"
WITHHELD_REASON = "withheld_pii"

_CATALOG_SQL = """
WITH catalog AS (
    SELECT item_id, scope, category, title FROM raw_items
    UNION ALL
    SELECT DISTINCT item_id, 'default', NULL, NULL FROM raw_interactions
    WHERE item_id NOT IN (SELECT item_id FROM raw_items)
)
""" + "\nUNION ALL\n".join(
    f"SELECT item_id, '{column}' AS column_name, {column} AS value FROM catalog WHERE {column} IS NOT NULL"
    for column in (*SERVED_COLUMNS, *UNSERVED_COLUMNS)
)
"""(item_id, column_name, value) of every text value of the catalogue as staging builds it (``stg_items``)."""

_FINDING_COLUMNS = ("item_id", "column_name", "finding", "masked_value", "served", "allowed", "allowed_value")
FINDINGS_DDL = (
    "CREATE OR REPLACE TABLE catalog_findings (item_id VARCHAR, column_name VARCHAR, finding VARCHAR, "
    "masked_value VARCHAR, served BOOLEAN, allowed BOOLEAN, allowed_value VARCHAR)"
)


@dataclass(frozen=True)
class Screening:
    """Findings of one screening: all of them, and the items withheld from serving."""

    findings: pd.DataFrame  # item_id, column_name, finding, masked_value, served, allowed, allowed_value

    @property
    def withheld(self) -> list[str]:
        rows = self.findings[self.findings["served"] & ~self.findings["allowed"]]
        return sorted(rows["item_id"].unique())

    @property
    def allowed(self) -> pd.DataFrame:
        return self.findings[self.findings["allowed"]]


def _kinds(value: str, raw: RawPii) -> list[str]:
    return pii_kinds(value) + ([RAW_VALUE] if value in raw.values else [])


def screen_catalog(con: duckdb.DuckDBPyConnection, raw: RawPii, allow: frozenset[str]) -> Screening:
    """Scan the raw catalogue's text columns (see the module docstring); nothing is written."""
    values = con.execute(_CATALOG_SQL).df()
    normalised = {value: normalise(value) for value in values["value"].unique()}
    kinds = {value: _kinds(text, raw) for value, text in normalised.items()}
    rows = [
        {
            "item_id": item_id,
            "column_name": column,
            "finding": kind,
            "masked_value": mask(value),
            "served": column in SERVED_COLUMNS,
            "allowed": normalised[value] in allow,
            # an allowlisted value is confirmed not personal: it is kept to show in the privacy report
            "allowed_value": normalised[value] if normalised[value] in allow else None,
        }
        for item_id, column, value in values.itertuples(index=False)
        for kind in kinds[value]
    ]
    frame = pd.DataFrame(rows, columns=list(_FINDING_COLUMNS))
    return Screening(frame.sort_values(["item_id", "column_name", "finding"], kind="stable").reset_index(drop=True))


def record_screening(con: duckdb.DuckDBPyConnection, screening: Screening, batch_id: str, now: datetime) -> None:
    """Write ``catalog_findings`` and ``withheld_items`` (read by staging), and quarantine withheld items."""
    con.execute(FINDINGS_DDL)
    con.register("findings_df", screening.findings)
    con.execute("INSERT INTO catalog_findings SELECT * FROM findings_df")
    con.unregister("findings_df")
    con.execute(
        "CREATE OR REPLACE TABLE withheld_items AS SELECT DISTINCT item_id FROM catalog_findings "
        "WHERE served AND NOT allowed ORDER BY item_id"
    )
    withheld = screening.findings[screening.findings["served"] & ~screening.findings["allowed"]]
    evidence = [
        [batch_id, "items", None, WITHHELD_REASON, json.dumps(row, sort_keys=True), now]
        for row in withheld[["item_id", "column_name", "finding", "masked_value"]].to_dict("records")
    ]
    if evidence:
        con.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?)", evidence)


def findings_markdown(findings: pd.DataFrame, limit: int = 20) -> str:
    """The first ``limit`` findings as a Markdown table (values masked)."""
    lines = ["| item | column | finding | value (masked) | served | allowed |", "|---|---|---|---|---|---|"]
    for row in findings.head(limit).itertuples(index=False):
        lines.append(
            f"| {row.item_id} | {row.column_name} | {row.finding} | {row.masked_value} | {row.served} | {row.allowed} |"
        )
    if len(findings) > limit:
        lines.append(f"| ... {len(findings) - limit} more in the warehouse table catalog_findings | | | | | |")
    return "\n".join(lines)
