"""Dagster resources: the DuckDB warehouse, the serving PostgreSQL, the model store."""

from .model_store import ModelStoreResource
from .serving_db import ServingDatabaseResource
from .warehouse import WarehouseResource

__all__ = ["ModelStoreResource", "ServingDatabaseResource", "WarehouseResource"]
