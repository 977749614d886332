"""[rankings] Top-N per user and scope from the best evaluated personal model; popularity per scope for fallback."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ..config import Settings
from ..resources import ModelStoreResource, WarehouseResource
from ..steps.rank import choose_serving_model, current_per_user, write_global_rankings, write_user_rankings
from ..steps.registry import latest_trained
from ..steps.tables import ACTIVITY, ITEMS
from .metering import metered
from .models import MODEL_ASSET_KEYS


@dg.asset(
    group_name="rankings",
    deps=[*MODEL_ASSET_KEYS, "ranker_model", "offline_eval", "per_user_models", ACTIVITY, ITEMS],
    pool="warehouse",
)
@metered
def user_rankings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """Top-N items per opted-in user and scope, seen items and consistently dismissed categories
    removed, from the best personal model of this run's offline evaluation, or the re-ranker over
    every source's candidates (diversified, rationale tags in ``rank_rationale``) when it beats that
    model clearly; users with a kept per-user model are scored by it."""
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = Settings.from_env()
    with warehouse.connect() as con:
        registry = latest_trained(con)
        entry = choose_serving_model(con, registry, margin_stderrs=settings.ranker_margin_stderrs)
        per_user = current_per_user(con, registry.get("per_user"), Path(model_store.root), context.run_id, now)
        counts = write_user_rankings(con, settings, entry, registry, per_user)
    return dg.MaterializeResult(
        metadata={
            "serving_model": entry.model_name,
            "model_version": entry.model_version,
            "per_user_models": len(per_user.users) if per_user is not None else 0,
            "per_user_version": per_user.version if per_user is not None else "(none)",
            "users": counts.users,
            "dagster/row_count": counts.rows,
        }
    )


@dg.asset(group_name="rankings", deps=["popularity_model", ITEMS], pool="warehouse")
@metered
def global_rankings(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Non-personalized top-N per scope: cold start, opted-out and expired fallbacks."""
    with warehouse.connect() as con:
        scopes = write_global_rankings(con, latest_trained(con)["popularity"], Settings.from_env().top_n)
    return dg.MaterializeResult(metadata={"scopes": scopes})
