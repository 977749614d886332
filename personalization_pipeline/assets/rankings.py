"""[rankings] Top-N per user and scope from the best evaluated personal model; popularity per scope for fallback."""

import dagster as dg

from ..config import Settings
from ..resources import WarehouseResource
from ..steps.rank import choose_serving_model, write_global_rankings, write_user_rankings
from ..steps.registry import latest_trained
from ..steps.tables import ACTIVITY, ITEMS
from .models import MODEL_ASSET_KEYS


@dg.asset(group_name="rankings", deps=[*MODEL_ASSET_KEYS, "offline_eval", ACTIVITY, ITEMS], pool="warehouse")
def user_rankings(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Top-N items per opted-in user and scope, seen and dismissed items removed, from the personal
    model that scored best in this run's offline evaluation."""
    with warehouse.connect() as con:
        entry = choose_serving_model(con, latest_trained(con))
        counts = write_user_rankings(con, entry, Settings.from_env().top_n)
    return dg.MaterializeResult(
        metadata={
            "serving_model": entry.model_name,
            "model_version": entry.model_version,
            "users": counts.users,
            "dagster/row_count": counts.rows,
        }
    )


@dg.asset(group_name="rankings", deps=["popularity_model", ITEMS], pool="warehouse")
def global_rankings(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Non-personalized top-N per scope: cold start, opted-out and expired fallbacks."""
    with warehouse.connect() as con:
        scopes = write_global_rankings(con, latest_trained(con)["popularity"], Settings.from_env().top_n)
    return dg.MaterializeResult(metadata={"scopes": scopes})
