"""[privacy] What each run withheld, dropped, generalised and deleted, shown in the Dagster UI."""

import dagster as dg

from ..privacy.pii import operator_allowlist
from ..privacy.report import privacy_report as build_report
from ..privacy.report import report_markdown
from ..resources import RunSettings, WarehouseResource
from .metering import metered


@dg.asset(group_name="privacy", deps=["user_features", "withheld_items", "serving_tables"], pool="warehouse")
@metered
def privacy_report(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Opted-out users and events excluded, catalogue items withheld, the operator's allowlist and what it let
    through, PII columns dropped, values generalised, retention deletions."""
    with warehouse.connect(read_only=True) as con:
        settings = run_settings.resolve()
        report = build_report(con, operator_allowlist(settings.pii_allow, settings.pii_allow_file))
    scalars = {k: v for k, v in report.items() if isinstance(v, int | str)}
    return dg.MaterializeResult(metadata={"report": dg.MetadataValue.md(report_markdown(report)), **scalars})
