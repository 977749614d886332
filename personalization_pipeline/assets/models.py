"""[models] One training asset per registered recommender (popularity, ALS, EASE), on opted-in users' signals."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from ..recsys.registry import GLOBAL_MODELS
from ..resources import ModelStoreResource, RunSettings, WarehouseResource
from ..steps.registry import RegistryEntry
from ..steps.tables import ITEMS, SIGNALS
from ..steps.train import train_and_register
from .metering import metered


def registry_metadata(context: dg.AssetExecutionContext, entry: RegistryEntry) -> dict[str, Any]:
    """Status, kind and parameters of a registry entry; a skip is logged and its reason shown."""
    metadata: dict[str, Any] = {"status": entry.status, "kind": entry.kind, "params": entry.params_dict}
    if entry.path is None:
        context.log.warning(f"{entry.model_name} skipped: {entry.detail}")
        metadata["skipped_because"] = entry.detail
    return metadata


def _model_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{name}_model",
        group_name="models",
        deps=[SIGNALS, ITEMS, "tuned_settings"],
        pool="warehouse",
        description=f"The {name} recommender trained on the decayed user-item signals (with the last tuned "
        "settings), stored and registered.",
    )
    @metered
    def train(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        model_store: ModelStoreResource,
        run_settings: RunSettings,
    ):
        with warehouse.connect() as con:
            entry, model = train_and_register(
                con,
                name,
                run_settings.resolve(),
                Path(model_store.root),
                context.run_id,
                datetime.now(UTC).replace(tzinfo=None),
            )
        metadata = registry_metadata(context, entry)
        if model is not None:
            metadata.update({"model_version": entry.model_version, "items": len(model.item_ids), "path": entry.path})
        return dg.MaterializeResult(metadata=metadata)

    return train


model_assets = [_model_asset(name) for name in GLOBAL_MODELS]
MODEL_ASSET_KEYS = [f"{name}_model" for name in GLOBAL_MODELS]
