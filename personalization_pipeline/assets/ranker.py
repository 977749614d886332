"""[models] The LightGBM LambdaRank re-ranker over multi-source candidates."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..resources import ModelStoreResource, RunSettings, WarehouseResource
from ..steps.registry import latest_trained
from ..steps.rerank import RANKER, ranker_is_current, rerank_cost_reason, train_ranker
from ..steps.tables import ITEMS, SIGNALS, USER_FEATURES
from .metering import metered
from .models import MODEL_ASSET_KEYS, registry_metadata


class RankerConfig(dg.Config):
    always_retrain: bool = Field(
        default=False,
        description="Train even when the registered re-ranker is younger than PERSONALIZATION_RANKER_RETRAIN_DAYS "
        "(the weekly job sets it).",
    )


@dg.asset(group_name="models", deps=[*MODEL_ASSET_KEYS, SIGNALS, ITEMS, USER_FEATURES], pool="warehouse")
@metered
def ranker_model(
    context: dg.AssetExecutionContext,
    config: RankerConfig,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """LambdaRank over the candidates of every source, trained on the evaluation split's train part
    (folds of it give the relevance); feature importance (gain), early-stopping figures and the
    diversity weight chosen on validation in the metadata. A heavy fit: the weekly job trains it,
    a nightly run only when the registered one is older than ``PERSONALIZATION_RANKER_RETRAIN_DAYS``
    (or there is none) and otherwise re-ranks with it. Skipped, with the reason, when re-ranking
    every list would exceed ``PERSONALIZATION_RANKER_MAX_ROWS`` candidate rows per user bucket."""
    settings = run_settings.resolve()
    now = datetime.now(UTC).replace(tzinfo=None)
    with warehouse.connect() as con:
        entries = latest_trained(con)
        current = entries.get(RANKER)
        reusable = ranker_is_current(current, now, settings.ranker_retrain_days)
        if not config.always_retrain and reusable and rerank_cost_reason(con, settings) is None:
            assert current is not None
            age = (now - current.trained_at).total_seconds() / 86_400
            return dg.MaterializeResult(
                metadata={
                    **registry_metadata(context, current),
                    "model_version": current.model_version,
                    "retrained": False,
                    "reused_because": f"trained {age:.1f} days ago, within PERSONALIZATION_RANKER_RETRAIN_DAYS="
                    f"{settings.ranker_retrain_days:g}",
                }
            )
        entry, training = train_ranker(con, settings, entries, Path(model_store.root), context.run_id, now)
    metadata = registry_metadata(context, entry)
    if training is not None:
        report = training.report
        metadata.update(
            {
                "model_version": entry.model_version,
                "retrained": True,
                "training_lists": report.lists,
                "dagster/row_count": report.rows,
                "relevant_rows": report.positives,
                "best_iteration": report.best_iteration,
                "valid_ndcg": round(report.valid_ndcg, 4),
                "diversity_weight": training.reranker.settings["diversity_weight"],
                "valid_ndcg_by_diversity_weight": {str(w): round(v, 4) for w, v in training.diversity.items()},
                "feature_importance_gain": dg.MetadataValue.json(training.reranker.importance()),
            }
        )
    return dg.MaterializeResult(metadata=metadata)
