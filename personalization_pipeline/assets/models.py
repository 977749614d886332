"""[models] Global ALS and popularity models trained on opted-in users' signals."""

from datetime import UTC, datetime

import dagster as dg

from ..config import Settings
from ..modeling import als_params, als_version, read_signals, record_model_version, train_popularity
from ..recsys.als import train_als
from ..recsys.matrices import InteractionMatrix
from ..resources import ModelStoreResource, WarehouseResource


@dg.asset(group_name="models", deps=["mart_user_item_signals"], pool="warehouse")
def als_model(warehouse: WarehouseResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
    """Implicit ALS over the decayed user-item signals, saved to the model store."""
    with warehouse.connect(read_only=True) as con:
        matrix = InteractionMatrix.from_frame(read_signals(con))
    model = train_als(matrix, als_params(Settings.from_env()))
    version = als_version(model)
    model.save(model_store.path("als", version))
    with warehouse.connect() as con:
        record_model_version(con, "als", version, datetime.now(UTC).replace(tzinfo=None))
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "users": len(model.users),
            "items": len(model.items),
            "nonzeros": int(matrix.weights.nnz),
            "factors": model.params.factors,
            "path": str(model_store.path("als", version)),
        }
    )


@dg.asset(group_name="models", deps=["mart_user_item_signals", "stg_items"], pool="warehouse")
def popularity_model(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Item popularity (sum of positive signal), the baseline and cold-start model."""
    with warehouse.connect() as con:
        version, items = train_popularity(con)
        record_model_version(con, "popularity", version, datetime.now(UTC).replace(tzinfo=None))
    return dg.MaterializeResult(metadata={"model_version": version, "items": items})
