"""Settings from environment variables: the only place the environment is read.

Every variable is prefixed ``PERSONALIZATION_`` and has a working default for the
embedded setup (DuckDB file and pgserver PostgreSQL under ``data/``).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

PREFIX = "PERSONALIZATION_"
DEV_JWT_SECRET = "dev-only-insecure-secret-change-me-0123456789"

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "time_spent": 2.0,
    "rate": 3.0,
    "accept": 4.0,
    "complete": 5.0,
    "dismiss": -3.0,
}


def project_root() -> Path:
    """Directory holding ``pyproject.toml``, ``dbt_project/`` and ``data/``."""
    return Path(__file__).resolve().parent.parent


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    return default if value in (None, "") else value


def _path(name: str, default: Path) -> Path:
    value = _env(name)
    return Path(value).expanduser().resolve() if value else default


def _number(name: str, default: float, cast=float):
    raw = _env(name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"{PREFIX}{name}={raw!r} is not a valid {cast.__name__}") from exc


_CASTS = {"int": int, "float": float}


def _json(name: str, default):
    raw = _env(name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{PREFIX}{name} is not valid JSON: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    """All runtime settings; build with :meth:`from_env`."""

    data_dir: Path
    runtime_dir: Path
    warehouse_path: Path
    database_url: str | None
    embedded_pg_dir: Path
    model_dir: Path
    mapping_path: Path | None
    jwt_secret: str
    jwt_issuer: str | None
    jwt_audience: str | None
    api_database_url: str | None = None  # the lookup API's own login; unset: derived from database_url
    top_n: int = 50
    k_anonymity: int = 10
    ranking_ttl_hours: float = 24.0
    feature_retention_days: float = 30.0
    eval_retention_days: float = 365.0
    quarantine_retention_days: float = 30.0
    raw_retention_days: float = 730.0
    half_life_days: float = 30.0
    future_tolerance_minutes: float = 60.0
    strict_items: bool = False
    eval_k: int = 10
    eval_split: str = "temporal"  # or "random": per-user stratified random holdout
    holdout_fraction: float = 0.2
    als_factors: int = 16
    als_iterations: int = 20
    als_regularization: float = 10.0
    als_alpha: float = 3.0
    seed: int = 42
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    nightly_cron: str = "0 2 * * *"
    weekly_cron: str = "0 4 * * 0"
    cleanup_cron: str = "0 3 * * *"
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from ``PERSONALIZATION_<FIELD>`` variables; unset ones keep their default."""
        runtime = _path("RUNTIME_DIR", project_root() / "data")
        mapping = _env("MAPPING_PATH")
        scalars = {}
        for f in fields(cls):
            if f.type in _CASTS and f.default is not MISSING:
                scalars[f.name] = _number(f.name.upper(), f.default, _CASTS[f.type])
            elif f.type == "str" and f.default is not MISSING:
                scalars[f.name] = _env(f.name.upper(), f.default)
        return cls(
            data_dir=_path("DATA_DIR", runtime / "raw"),
            runtime_dir=runtime,
            warehouse_path=_path("WAREHOUSE_PATH", runtime / "warehouse.duckdb"),
            database_url=_env("DATABASE_URL"),
            embedded_pg_dir=_path("EMBEDDED_PG_DIR", runtime / "pgserver"),
            model_dir=_path("MODEL_DIR", runtime / "models"),
            mapping_path=Path(mapping).expanduser().resolve() if mapping else None,
            jwt_secret=_env("JWT_SECRET", DEV_JWT_SECRET),
            jwt_issuer=_env("JWT_ISSUER"),
            jwt_audience=_env("JWT_AUDIENCE"),
            api_database_url=_env("API_DATABASE_URL"),
            strict_items=_env("STRICT_ITEMS", "false").lower() in {"1", "true", "yes"},
            event_weights={**DEFAULT_EVENT_WEIGHTS, **_json("EVENT_WEIGHTS", {})},
            **scalars,
        )
