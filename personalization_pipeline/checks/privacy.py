"""Blocking PII checks on every warehouse table whose content is published.

A failing check stops the assets downstream of its table in the same run, ``serving_tables``
included, so the previous publish stays served.
"""

import dagster as dg

from ..config import Settings
from ..ingest import load_mapping
from ..privacy.gx_suites import PUBLISHED_TABLES, validate_table
from ..privacy.pii import collect_raw_pii
from ..resources import WarehouseResource

CHECK_NAME = "pii_free"


def _pii_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name=CHECK_NAME,
        blocking=True,
        pool="warehouse",
        description=f"No e-mail, phone, IP address or raw users-file PII value in the text of {table}.",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        settings = Settings.from_env()
        raw = collect_raw_pii(settings.data_dir, load_mapping(settings.mapping_path), settings.k_anonymity)
        with warehouse.connect(read_only=True) as con:
            result = validate_table(con, table, raw)
        return dg.AssetCheckResult(
            passed=result.success,
            description=result.describe(),
            metadata={
                f"rows/{table}": result.rows,
                "distinct_strings": result.values,
                "failures": len(result.failures),
                "failed_expectations": [str(f) for f in result.failures],
                "raw_pii_columns": list(raw.columns),
                "raw_pii_values": len(raw.values),
            },
        )

    return check


privacy_checks = [_pii_check(table) for table in PUBLISHED_TABLES]
