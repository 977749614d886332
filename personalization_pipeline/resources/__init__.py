"""Dagster resources: the DuckDB warehouse, the serving PostgreSQL, the model store, the run's settings."""

from .model_store import ModelStoreResource
from .run_settings import RunSettings
from .serving_db import ServingDatabaseResource
from .warehouse import WarehouseResource

__all__ = ["ModelStoreResource", "RunSettings", "ServingDatabaseResource", "WarehouseResource"]
