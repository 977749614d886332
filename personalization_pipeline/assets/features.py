"""[features] Privacy-safe user feature vectors for opted-in users."""

import dagster as dg

from ..config import Settings
from ..features.user_features import build_user_features
from ..resources import WarehouseResource
from .metering import metered


@dg.asset(
    group_name="features",
    deps=["mart_user_activity", "mart_user_item_signals", "stg_users", "stg_settings"],
    pool="warehouse",
)
@metered
def user_features(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One allowlisted feature vector per opted-in user; rare categorical values generalised."""
    with warehouse.connect() as con:
        counts = build_user_features(con, Settings.from_env().k_anonymity)
    return dg.MaterializeResult(metadata={**counts, "dagster/row_count": counts["users"]})
