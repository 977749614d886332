"""[evaluation] Offline metrics of every registered model on a split of the run's own signals."""

from datetime import UTC, datetime

import dagster as dg

from ..config import Settings
from ..resources import WarehouseResource
from ..steps.evaluate import evaluate_registered, metrics_markdown
from ..steps.registry import latest_trained
from ..steps.tables import ITEMS, SIGNALS, USER_FEATURES
from .metering import metered
from .models import MODEL_ASSET_KEYS


@dg.asset(
    group_name="evaluation", deps=[*MODEL_ASSET_KEYS, "ranker_model", SIGNALS, ITEMS, USER_FEATURES], pool="warehouse"
)
@metered
def offline_eval(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """precision@K, recall@K, NDCG@K, MAP@K, hit rate, coverage, diversity and novelty per model; history kept."""
    with warehouse.connect() as con:
        result = evaluate_registered(
            con, Settings.from_env(), latest_trained(con), context.run_id, datetime.now(UTC).replace(tzinfo=None)
        )
    values = {f"{r.model_name}/{r.metric}@{r.k}": r.value for r in result.itertuples()}
    return dg.MaterializeResult(metadata={"metrics": dg.MetadataValue.md(metrics_markdown(result)), **values})
