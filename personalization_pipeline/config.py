"""Settings from environment variables: the only place the environment is read.

Every variable is prefixed ``PERSONALIZATION_`` and has a working default for the
embedded setup (DuckDB file and pgserver PostgreSQL under ``data/``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "PERSONALIZATION_"

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
    top_n: int = 50
    k_anonymity: int = 10
    ranking_ttl_hours: float = 24.0
    half_life_days: float = 30.0
    future_tolerance_minutes: float = 60.0
    strict_items: bool = False
    eval_k: int = 10
    holdout_fraction: float = 0.2
    als_factors: int = 64
    als_iterations: int = 20
    als_regularization: float = 0.05
    als_alpha: float = 10.0
    seed: int = 42
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    nightly_cron: str = "0 2 * * *"
    weekly_cron: str = "0 4 * * 0"
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @classmethod
    def from_env(cls) -> Settings:
        root = project_root()
        runtime = _path("RUNTIME_DIR", root / "data")
        mapping = _env("MAPPING_PATH")
        weights = dict(DEFAULT_EVENT_WEIGHTS)
        weights.update(_json("EVENT_WEIGHTS", {}))
        return cls(
            data_dir=_path("DATA_DIR", runtime / "raw"),
            runtime_dir=runtime,
            warehouse_path=_path("WAREHOUSE_PATH", runtime / "warehouse.duckdb"),
            database_url=_env("DATABASE_URL"),
            embedded_pg_dir=_path("EMBEDDED_PG_DIR", runtime / "pgserver"),
            model_dir=_path("MODEL_DIR", runtime / "models"),
            mapping_path=Path(mapping).expanduser().resolve() if mapping else None,
            jwt_secret=_env("JWT_SECRET", "dev-only-insecure-secret-change-me-0123456789"),
            jwt_issuer=_env("JWT_ISSUER"),
            jwt_audience=_env("JWT_AUDIENCE"),
            top_n=_number("TOP_N", 50, int),
            k_anonymity=_number("K_ANONYMITY", 10, int),
            ranking_ttl_hours=_number("RANKING_TTL_HOURS", 24.0),
            half_life_days=_number("HALF_LIFE_DAYS", 30.0),
            future_tolerance_minutes=_number("FUTURE_TOLERANCE_MINUTES", 60.0),
            strict_items=(_env("STRICT_ITEMS", "false").lower() in {"1", "true", "yes"}),
            eval_k=_number("EVAL_K", 10, int),
            holdout_fraction=_number("HOLDOUT_FRACTION", 0.2),
            als_factors=_number("ALS_FACTORS", 64, int),
            als_iterations=_number("ALS_ITERATIONS", 20, int),
            als_regularization=_number("ALS_REGULARIZATION", 0.05),
            als_alpha=_number("ALS_ALPHA", 10.0),
            seed=_number("SEED", 42, int),
            event_weights=weights,
            nightly_cron=_env("NIGHTLY_CRON", "0 2 * * *"),
            weekly_cron=_env("WEEKLY_CRON", "0 4 * * 0"),
            api_host=_env("API_HOST", "127.0.0.1"),
            api_port=_number("API_PORT", 8000, int),
        )
