"""[per_user] Per-user models (weekly), kept only when they beat the global model on the user's own holdout."""

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ..recsys.registry import PERSONAL_MODELS
from ..resources import ModelStoreResource, RunSettings, WarehouseResource
from ..steps.per_user import report_summary, train_per_user
from ..steps.rank import choose_serving_model
from ..steps.registry import latest_trained
from ..steps.tables import ITEMS, SIGNALS
from ..steps.train import load
from .metering import metered
from .models import MODEL_ASSET_KEYS


@dg.asset(group_name="per_user", deps=[*MODEL_ASSET_KEYS, "offline_eval", SIGNALS, ITEMS], pool="warehouse")
@metered
def per_user_models(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """A logistic model per user with enough labelled history, over the serving global model; the
    counts, mean AUCs (kept vs global) and time per 10k eligible users in the metadata."""
    started = time.perf_counter()
    with warehouse.connect() as con:
        base_entry = choose_serving_model(con, latest_trained(con), PERSONAL_MODELS)
        entry, fitted = train_per_user(
            con,
            run_settings.resolve(),
            base_entry,
            load(base_entry),
            Path(model_store.root),
            context.run_id,
            datetime.now(UTC).replace(tzinfo=None),
        )
    summary = report_summary(fitted, time.perf_counter() - started)
    if entry.model_version is None:
        context.log.info(f"no per-user model kept: {entry.detail}")
    return dg.MaterializeResult(
        metadata={
            **summary,
            "status": entry.status,
            "model_version": entry.model_version or "(none kept)",
            "base_model_version": base_entry.model_version,
            **({"skipped_because": entry.detail} if entry.detail else {}),
        }
    )
