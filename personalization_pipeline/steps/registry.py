"""The model registry: one warehouse table, the single source of truth for which version a run
trained, ranks with and publishes (mirrored to ``personalization_models`` at publish).

Being a warehouse table, it follows the run: a failed run leaves it, and so the serving
versions, as they were.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import duckdb

from ..sqlutil import has_table
from .tables import REGISTRY

TRAINED = "trained"
SKIPPED = "skipped"
TUNING = "tuning"
"""The registry name of the settings the weekly tuning chose (kind ``random_search``)."""

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {REGISTRY} (run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, "
    "kind VARCHAR, params VARCHAR, trained_at TIMESTAMP, status VARCHAR, detail VARCHAR, path VARCHAR)"
)


@dataclass(frozen=True)
class RegistryEntry:
    """One model of one run: trained (version, params, path) or skipped (detail says why)."""

    run_id: str
    model_name: str
    model_version: str | None
    kind: str
    params: str  # JSON
    trained_at: datetime
    status: str
    detail: str | None = None
    path: str | None = None

    @property
    def params_dict(self) -> dict[str, object]:
        return json.loads(self.params)


def record(con: duckdb.DuckDBPyConnection, entry: RegistryEntry) -> None:
    """Append ``entry`` (a run that retrains a model replaces its own earlier row)."""
    con.execute(_DDL)
    con.execute(f"DELETE FROM {REGISTRY} WHERE run_id = ? AND model_name = ?", [entry.run_id, entry.model_name])
    con.execute(f"INSERT INTO {REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(asdict(entry).values()))


def latest_trained(con: duckdb.DuckDBPyConnection) -> dict[str, RegistryEntry]:
    """The newest trained entry of each model, by name (none before the first training)."""
    if not has_table(con, REGISTRY):
        return {}
    rows = con.execute(
        f"SELECT * FROM {REGISTRY} WHERE status = '{TRAINED}' "
        "QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY trained_at DESC, run_id DESC) = 1 "
        "ORDER BY model_name"
    ).fetchall()
    return {row[1]: RegistryEntry(*row) for row in rows}


def with_tuned(con: duckdb.DuckDBPyConnection, settings: Any) -> Any:
    """``settings`` with the values of the last ``tuning`` entry, except those the environment sets."""
    entry = latest_trained(con).get(TUNING)
    if entry is None:
        return settings
    tuned = {name: value for name, value in entry.params_dict.items() if name not in settings.model_fields_set}
    return settings.model_copy(update=tuned)
