"""[evaluation] Offline metrics of ALS and the popularity baseline on a temporal holdout."""

from datetime import UTC, datetime

import dagster as dg

from ..config import Settings
from ..modeling import evaluate_models, metrics_markdown
from ..resources import WarehouseResource


@dg.asset(group_name="evaluation", deps=["mart_user_item_signals", "stg_items"], pool="warehouse")
def offline_eval(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """precision@K, recall@K, NDCG@K, MAP@K, hit rate and coverage per model; history kept."""
    with warehouse.connect() as con:
        result = evaluate_models(con, Settings.from_env(), context.run_id, datetime.now(UTC).replace(tzinfo=None))
    values = {f"{r.model_name}/{r.metric}@{r.k}": r.value for r in result.itertuples()}
    return dg.MaterializeResult(metadata={"metrics": dg.MetadataValue.md(metrics_markdown(result)), **values})
