"""Column mapping: point the pipeline at an export whose files and columns are named differently.

A mapping file is YAML (or JSON) keyed by contract table::

    interactions:
      file: ratings.csv          # optional; default <table>.parquet or <table>.csv
      columns: {userId: user_id, movieId: item_id, timestamp: occurred_at, rating: value}
      defaults: {event_type: rate}   # optional constant values for missing columns
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .contract import CONTRACTS
from .errors import InputError


@dataclass(frozen=True)
class TableMapping:
    """How one contract table is found and renamed."""

    file: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)


def load_mapping(path: Path | None) -> dict[str, TableMapping]:
    """Read and validate a mapping file; ``None`` means identity mapping for every table."""
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot read mapping file: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "mapping file must be a mapping of table name to settings")
    mapping: dict[str, TableMapping] = {}
    for table, spec in raw.items():
        if table not in CONTRACTS:
            raise InputError(path, f"unknown table '{table}' (known: {', '.join(CONTRACTS)})")
        spec = spec or {}
        unknown = set(spec) - {"file", "columns", "defaults"}
        if unknown:
            raise InputError(path, f"table '{table}': unknown keys {sorted(unknown)}")
        allowed = set(CONTRACTS[table].columns)
        columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
        defaults = {str(k): str(v) for k, v in (spec.get("defaults") or {}).items()}
        for target in [*columns.values(), *defaults]:
            if target not in allowed:
                raise InputError(path, f"table '{table}': '{target}' is not a contract column", target)
        mapping[table] = TableMapping(spec.get("file"), columns, defaults)
    return mapping
