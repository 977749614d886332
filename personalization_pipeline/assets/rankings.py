"""[rankings] Top-N per user and scope from ALS; popularity per scope for fallback."""

import dagster as dg

from ..config import Settings
from ..modeling import model_versions, write_global_rankings, write_user_rankings
from ..recsys.als import ALSModel
from ..resources import ModelStoreResource, WarehouseResource


@dg.asset(group_name="rankings", deps=["als_model", "mart_user_activity", "stg_items"], pool="warehouse")
def user_rankings(warehouse: WarehouseResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
    """Top-N items per opted-in user and scope, seen and dismissed items removed."""
    with warehouse.connect() as con:
        version = model_versions(con)["als"].version  # the version this run trained
        model = ALSModel.load(model_store.path("als", version))
        counts = write_user_rankings(con, model, Settings.from_env().top_n)
    return dg.MaterializeResult(
        metadata={"model_version": version, "users": counts.users, "dagster/row_count": counts.rows}
    )


@dg.asset(group_name="rankings", deps=["popularity_model"], pool="warehouse")
def global_rankings(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Non-personalized top-N per scope: cold start, opted-out and expired fallbacks."""
    with warehouse.connect() as con:
        scopes = write_global_rankings(con, Settings.from_env().top_n)
    return dg.MaterializeResult(metadata={"scopes": scopes})
