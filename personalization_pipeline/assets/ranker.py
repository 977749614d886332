"""[models] The LightGBM LambdaRank re-ranker over multi-source candidates."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ..config import Settings
from ..resources import ModelStoreResource, WarehouseResource
from ..steps.registry import latest_trained
from ..steps.rerank import train_ranker
from ..steps.tables import ITEMS, SIGNALS, USER_FEATURES
from .metering import metered
from .models import MODEL_ASSET_KEYS, registry_metadata


@dg.asset(group_name="models", deps=[*MODEL_ASSET_KEYS, SIGNALS, ITEMS, USER_FEATURES], pool="warehouse")
@metered
def ranker_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """LambdaRank over the candidates of every source, trained on the evaluation split's train part
    (folds of it give the relevance); feature importance (gain), early-stopping figures and the
    diversity weight chosen on validation in the metadata."""
    with warehouse.connect() as con:
        entry, training = train_ranker(
            con,
            Settings.from_env(),
            latest_trained(con),
            Path(model_store.root),
            context.run_id,
            datetime.now(UTC).replace(tzinfo=None),
        )
    metadata = registry_metadata(context, entry)
    if training is not None:
        report = training.report
        metadata.update(
            {
                "model_version": entry.model_version,
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
