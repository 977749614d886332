"""[serving] Atomic publish of rankings, fallbacks, features, models and metrics to PostgreSQL."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ..config import Settings
from ..resources import ServingDatabaseResource, WarehouseResource
from ..serving.publish import publish_snapshot
from ..serving.snapshot import build_snapshot
from ..steps.registry import latest_trained
from ..steps.tables import GLOBAL_RANKINGS, SIMILAR_USERS, USER_FEATURES, USER_RANKINGS
from .metering import metered
from .models import MODEL_ASSET_KEYS


@dg.asset(
    group_name="serving",
    deps=[USER_RANKINGS, GLOBAL_RANKINGS, USER_FEATURES, "offline_eval", SIMILAR_USERS, *MODEL_ASSET_KEYS],
    pool="warehouse",
)
@metered
def serving_tables(warehouse: WarehouseResource, serving_db: ServingDatabaseResource) -> dg.MaterializeResult:
    """Replace the served rankings in one transaction: readers see the old or the new set, never a mix."""
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = Settings.from_env()
    ttl = timedelta(hours=settings.ranking_ttl_hours)
    with warehouse.connect(read_only=True) as con:  # the snapshot streams from it while publishing
        snapshot = build_snapshot(con, generated_at=now, ttl=ttl, registry=latest_trained(con))
        published = publish_snapshot(serving_db.get_url(), snapshot)
    return dg.MaterializeResult(
        metadata={
            **{f"rows/{table}": n for table, n in published.loaded.items()},
            "dropped_at_commit_opted_out": sum(published.dropped_opted_out.values()),
            "dropped_at_commit_opted_out_by_table": published.dropped_opted_out,
            "valid_until": str(now + ttl),
        }
    )
