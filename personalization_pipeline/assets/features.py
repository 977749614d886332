"""[features] Privacy-safe user feature vectors for opted-in users."""

import dagster as dg

from ..features.user_features import build_user_features
from ..resources import RunSettings, WarehouseResource
from .metering import metered


@dg.asset(
    group_name="features",
    deps=["mart_user_activity", "mart_user_item_signals", "stg_users", "stg_settings"],
    pool="warehouse",
)
@metered
def user_features(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """One allowlisted feature vector per opted-in user; rare categorical values generalised."""
    with warehouse.connect() as con:
        counts = build_user_features(con, run_settings.resolve().k_anonymity)
    return dg.MaterializeResult(metadata={**counts, "dagster/row_count": counts["users"]})
