"""Blocking PII checks on every warehouse table whose content is published.

A failing check stops the assets downstream of its table in the same run, ``serving_tables``
included, so the previous publish stays served.
"""

from functools import lru_cache
from pathlib import Path

import dagster as dg

from ..config import Settings
from ..ingest import load_mapping
from ..privacy.gx_suites import PUBLISHED_TABLES, validate_table
from ..privacy.pii import RawPii, collect_raw_pii
from ..resources import WarehouseResource

CHECK_NAME = "pii_free"


def _raw_pii(settings: Settings) -> RawPii:
    """The raw users file's PII values, read once per version of the input files (the four checks
    of a run share one read)."""
    files = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(settings.data_dir.glob("*")))
    mapping = str(settings.mapping_path) if settings.mapping_path else None
    return _read_raw_pii(str(settings.data_dir), mapping, settings.k_anonymity, files)


@lru_cache(maxsize=1)
def _read_raw_pii(data_dir: str, mapping_path: str | None, k: int, files: tuple) -> RawPii:
    """``files`` (names, mtimes, sizes) is part of the cache key only: a changed input is re-read."""
    return collect_raw_pii(Path(data_dir), load_mapping(Path(mapping_path) if mapping_path else None), k)


def _pii_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name=CHECK_NAME,
        blocking=True,
        pool="warehouse",
        description=f"No e-mail, phone, IP address or raw users-file PII value in the text of {table}.",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        raw = _raw_pii(Settings.from_env())
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
