"""[maintenance] Retention: nothing is kept or served past its retention period."""

from datetime import UTC, datetime

import dagster as dg

from ..privacy.retention import log_retention, purge_warehouse, retention_period
from ..resources import RunSettings, ServingDatabaseResource, WarehouseResource
from ..serving.publish import drop_stale_load_tables
from ..serving.retention import purge_expired
from .hygiene import DB_RETRY, transient_only
from .metering import metered


@dg.asset(group_name="maintenance", pool="warehouse", retry_policy=DB_RETRY)
@metered
@transient_only
def retention_cleanup(
    warehouse: WarehouseResource, serving_db: ServingDatabaseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Delete expired rankings, old features and metrics and the load tables of failed publishes
    (PostgreSQL), old quarantine, raw events and evaluation history (warehouse); report the counts."""
    settings = run_settings.resolve()
    now = datetime.now(UTC)
    served = purge_expired(
        serving_db.get_url(),
        feature_retention=retention_period(settings.feature_retention_days),
        eval_retention=retention_period(settings.eval_retention_days),
        now=now,
    )
    stale = drop_stale_load_tables(serving_db.get_url(), now=now)
    with warehouse.connect() as con:
        kept = purge_warehouse(
            con,
            now.replace(tzinfo=None),
            {
                "quarantine": retention_period(settings.quarantine_retention_days),
                "raw_interactions": retention_period(settings.raw_retention_days),
                "eval_history": retention_period(settings.eval_retention_days),
            },
        )
        deleted = {**{f"serving.{k}": v for k, v in served.items()}, **{f"warehouse.{k}": v for k, v in kept.items()}}
        log_retention(con, now.replace(tzinfo=None), deleted)
    return dg.MaterializeResult(
        metadata={**deleted, "total_deleted": sum(deleted.values()), "stale_load_tables_dropped": len(stale)}
    )
