"""PII asset checks on the warehouse tables whose values are published, and on the rest of the catalogue.

Blocking (``pii_free``): every table whose values reach a serving table (the served catalogue
columns, features, rankings). A failure stops the assets downstream of its table in the same
run, ``serving_tables`` included, so the previous publish stays served. The catalogue
screening (:mod:`privacy.catalog`) has already withheld doubtful items, so a failure here is
user-derived data or a value the screening did not see.

Non-blocking (``pii_scan_unserved``, WARN): catalogue columns that stay in the warehouse
(``title``); findings are reported with the items that carry them, nothing is withheld.
"""

import dagster as dg

from ..privacy.gx_suites import SERVED_SCANS, UNSERVED_SCANS, Scan, validate_table
from ..privacy.pii import ALLOW_SETTING, operator_allowlist, raw_pii_of_input
from ..resources import RunSettings, WarehouseResource

BLOCKING_CHECK = "pii_free"
REPORTING_CHECK = "pii_scan_unserved"


def _pii_check(scan: Scan, *, blocking: bool) -> dg.AssetChecksDefinition:
    scanned = ", ".join(scan.columns) if scan.columns else "the text"
    description = (
        f"No e-mail, phone, IP address or raw users-file PII value in {scanned} of {scan.table}"
        + ("" if blocking else " (reported, not blocking: these columns are not served)")
        + "."
    )

    @dg.asset_check(
        asset=scan.table,
        name=BLOCKING_CHECK if blocking else REPORTING_CHECK,
        blocking=blocking,
        pool="warehouse",
        description=description,
    )
    def check(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.AssetCheckResult:
        settings = run_settings.resolve()
        raw = raw_pii_of_input(settings.data_dir, settings.mapping_path, settings.k_anonymity)
        allow = operator_allowlist(settings.pii_allow, settings.pii_allow_file)
        with warehouse.connect(read_only=True) as con:
            result = validate_table(con, scan, raw, allow)
        hint = (
            f" A value you know is not personal data can be confirmed with {ALLOW_SETTING}."
            if blocking and not result.success
            else ""
        )
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=result.describe() + hint,
            metadata={
                f"rows/{scan.table}": result.rows,
                "scanned_columns": list(scan.columns) if scan.columns else "all text columns",
                "distinct_strings": result.values,
                "allowlisted_values": result.allowed,
                "failures": len(result.failures),
                "failed_expectations": [str(f) for f in result.failures],
                "raw_pii_columns": list(raw.columns),
                "raw_pii_values": len(raw.values),
            },
        )

    return check


privacy_checks = [_pii_check(scan, blocking=True) for scan in SERVED_SCANS] + [
    _pii_check(scan, blocking=False) for scan in UNSERVED_SCANS
]
