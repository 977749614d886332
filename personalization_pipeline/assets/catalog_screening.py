"""[privacy] Catalogue screening: a doubtful catalogue value withholds its item, not the run."""

from datetime import UTC, datetime

import dagster as dg

from ..privacy.catalog import findings_markdown, record_screening, screen_catalog
from ..privacy.pii import operator_allowlist, raw_pii_of_input
from ..resources import RunSettings, WarehouseResource
from ..sqlutil import scalar
from .metering import metered


@dg.asset(group_name="privacy", deps=["raw_items", "raw_interactions", "raw_users"], pool="warehouse")
@metered
def withheld_items(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Items whose served values (id, scope, category) look like personal data, left out of this run;
    findings in unserved columns (title) are reported only."""
    settings = run_settings.resolve()
    raw = raw_pii_of_input(settings.data_dir, settings.mapping_path, settings.k_anonymity)
    allow = operator_allowlist(settings.pii_allow, settings.pii_allow_file)
    with warehouse.connect() as con:
        screening = screen_catalog(con, raw, allow)
        batch_id = scalar(con, "SELECT max(batch_id) FROM ingest_batches")
        record_screening(con, screening, batch_id, datetime.now(UTC).replace(tzinfo=None))
    findings = screening.findings
    by_kind = findings[findings["served"] & ~findings["allowed"]].groupby("finding").size()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(screening.withheld),
            "withheld_items": len(screening.withheld),
            "withheld_by_finding": {str(k): int(v) for k, v in by_kind.items()},
            "first_withheld": screening.withheld[:10],
            "findings_in_unserved_columns": int((~findings["served"]).sum()),
            "allowed_by_operator": int(findings["allowed"].sum()),
            "findings": dg.MetadataValue.md(findings_markdown(findings)),
            "full_list": "warehouse tables catalog_findings and quarantine (reason withheld_pii)",
        }
    )
