"""[evaluation] Offline metrics of every registered model on a split of the run's own signals."""

from datetime import UTC, datetime

import dagster as dg

from ..resources import RunSettings, WarehouseResource
from ..steps.evaluate import evaluate_registered, metric_over_runs, metrics_table
from ..steps.registry import latest_trained
from ..steps.tables import ITEMS, SIGNALS, USER_FEATURES
from .metadata import table_metadata
from .metering import metered
from .models import MODEL_ASSET_KEYS


@dg.asset(
    group_name="evaluation", deps=[*MODEL_ASSET_KEYS, "ranker_model", SIGNALS, ITEMS, USER_FEATURES], pool="warehouse"
)
@metered
def offline_eval(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """precision@K, recall@K, NDCG@K, MAP@K, hit rate, coverage, diversity and novelty per model; history kept.

    Metadata: ``metrics`` (models x metrics of this run), ``ndcg_over_runs`` (every model's NDCG
    over the last 10 runs), the best model and its NDCG (plotted over runs by the UI)."""
    settings = run_settings.resolve()
    with warehouse.connect() as con:
        result = evaluate_registered(
            con, settings, latest_trained(con), context.run_id, datetime.now(UTC).replace(tzinfo=None)
        )
        history = metric_over_runs(con, "ndcg")
    metrics = metrics_table(result)
    best = metrics.loc[metrics["ndcg"].idxmax()] if "ndcg" in metrics and metrics["ndcg"].notna().any() else None
    k = settings.eval_k
    return dg.MaterializeResult(
        metadata={
            "metrics": table_metadata(metrics),
            "ndcg_over_runs": table_metadata(history),
            "dagster/row_count": len(result),
            **({"best_model": str(best["model"]), f"best_ndcg@{k}": float(best["ndcg"])} if best is not None else {}),
        }
    )
