"""The raw input contract: tables, required and optional columns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableContract:
    """Columns one raw table may carry into the warehouse (an allowlist)."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    mandatory: bool = False
    id_columns: tuple[str, ...] = ()  # canonicalised (see ids.canonical_id)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


INTERACTIONS = TableContract(
    "interactions",
    required=("user_id", "item_id", "occurred_at"),
    optional=("event_type", "value", "session_id", "device_type"),
    mandatory=True,
    id_columns=("user_id", "item_id"),
)
ITEMS = TableContract(
    "items",
    required=("item_id",),
    optional=("scope", "category", "created_at", "approved_at", "title"),
    id_columns=("item_id",),
)
USERS = TableContract(
    "users",
    required=("user_id",),
    optional=("signup_at", "country_code", "timezone_offset", "device_type"),
    id_columns=("user_id",),
)
SETTINGS = TableContract(
    "settings",
    required=("user_id", "personalization_enabled"),
    optional=("data_sharing_consent", "updated_at"),
    id_columns=("user_id",),
)

CONTRACTS: dict[str, TableContract] = {c.name: c for c in (INTERACTIONS, ITEMS, USERS, SETTINGS)}
SUPPORTED_EXTENSIONS = (".parquet", ".csv")
