"""Settings from environment variables: the only place the environment is read.

Every variable is prefixed ``PERSONALIZATION_`` and has a working default for the
embedded setup (DuckDB file and pgserver PostgreSQL under ``data/``). Values are typed
and validated (pydantic-settings): a boolean, number or JSON value that does not parse
stops with a message naming the variable, instead of being ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

_RUNTIME_PATHS = {
    "data_dir": "raw",
    "warehouse_path": "warehouse.duckdb",
    "embedded_pg_dir": "pgserver",
    "model_dir": "models",
    "staging_dir": "staging",
}
"""Paths that default to a place under the runtime directory."""


def project_root() -> Path:
    """Directory holding ``pyproject.toml``, ``dbt_project/`` and ``data/``."""
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """All runtime settings; build with :meth:`from_env`."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore")

    runtime_dir: Path = Field(default_factory=lambda: project_root() / "data")
    data_dir: Path
    warehouse_path: Path
    embedded_pg_dir: Path
    model_dir: Path
    staging_dir: Path  # per-bucket inputs and outputs of a run's fanned-out steps (shared by every process)
    database_url: str | None = None
    mapping_path: Path | None = None
    input_encoding: str = "utf-8"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_lifetime_seconds: int = Field(86_400, gt=0)
    api_database_url: str | None = None  # the lookup API's own login; unset: derived from database_url
    top_n: int = Field(50, gt=0)
    k_anonymity: int = Field(10, gt=0)
    ranking_ttl_hours: float = Field(24.0, gt=0)
    feature_retention_days: float = 30.0
    eval_retention_days: float = 365.0
    quarantine_retention_days: float = 30.0
    raw_retention_days: float = 730.0
    half_life_days: float | None = None  # None: adapt to the data's span (see half_life_span_fraction)
    half_life_span_fraction: float = Field(0.5, gt=0)
    future_tolerance_minutes: float = 60.0
    strict_items: bool = False
    run_lock_timeout_seconds: float = Field(600.0, ge=0)
    eval_k: int = Field(10, gt=0)
    eval_max_users: int = Field(10_000, gt=0)
    eval_split: Literal["temporal", "random"] = "random"
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    # Model hyper-parameters: unset keeps the model's own default (its Params class, the one place for them).
    als_factors: int | None = Field(None, gt=0)
    als_iterations: int | None = Field(None, gt=0)
    als_regularization: float | None = Field(None, ge=0)
    als_alpha: float | None = Field(None, gt=0)
    ease_regularization: float | None = Field(None, gt=0)
    ease_sequence_weight: float | None = Field(None, ge=0)
    ease_sequence_window: int | None = Field(None, ge=1)
    ease_sequence_regularization: float | None = Field(None, gt=0)
    ease_min_item_users: int | None = Field(None, ge=1)
    ease_max_items: int | None = Field(None, ge=1)
    ease_max_memory_mb: float | None = Field(None, gt=0)
    tuning_budget_seconds: float = Field(600.0, gt=0)
    tuning_max_trials: int = Field(16, ge=1)  # per tuned model, the current configuration included
    tuning_max_users: int = Field(5000, gt=0)
    tuning_significance: float = Field(0.05, gt=0, le=1)  # level of the test a tuned configuration must pass
    seed: int = 42
    pii_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)  # JSON list of confirmed non-PII values
    pii_allow_file: Path | None = None  # one confirmed value per line
    event_weights: Annotated[dict[str, float], NoDecode] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    per_user_min_interactions: int | None = Field(None, ge=2)
    per_user_min_auc: float | None = Field(None, ge=0, le=1)
    per_user_margin_stderrs: float | None = None  # negative: keep models up to that many SE worse
    regression_tolerance: float = Field(0.05, ge=0, le=1)
    ranker_candidates: int = Field(200, gt=0)
    ranker_retrain_days: float = Field(7.0, ge=0)  # the nightly reuses a re-ranker younger than this
    ranker_folds: int = Field(3, ge=2)
    ranker_max_users: int = Field(5000, gt=1)
    ranker_max_rows: int = Field(60_000_000, gt=0)  # candidate rows a bucket may re-rank; beyond: no re-ranker
    # LightGBM parameters of the re-ranker: unset keeps RerankerParams' default (recsys/reranker.py).
    ranker_learning_rate: float | None = Field(None, gt=0)
    ranker_num_leaves: int | None = Field(None, ge=2)
    ranker_min_child_samples: int | None = Field(None, ge=1)
    ranker_lambda_l2: float | None = Field(None, ge=0)
    cold_start_max_history: int = Field(5, ge=0)  # fewer engaged items: the cold-start blend; 0 turns it off
    cold_start_category_boost: float = Field(1.0, ge=0)
    cold_start_fresh_boost: float = Field(0.5, ge=0)
    ranker_margin_stderrs: float = Field(1.0, ge=0)  # how clearly the re-ranker must beat the best personal model
    fresh_days: float = Field(14.0, ge=0)
    dismiss_filter_min: int = Field(3, ge=1)
    dismiss_filter_share: float = Field(0.8, gt=0, le=1)
    experiment_attribution_hours: int = Field(24, gt=0)  # outcomes count until this long after the last list
    experiment_significance: float = Field(0.05, gt=0, lt=1)  # the verdict's test level (before Bonferroni)
    similar_users_k: int = Field(20, gt=0)
    similar_users_threshold: float = Field(0.5, ge=-1, le=1)
    nightly_cron: str = "0 2 * * *"
    weekly_cron: str = "0 4 * * 0"
    cleanup_cron: str = "0 3 * * *"
    schedules_running: bool = False  # the schedules' default status: running (the compose stack sets it)
    raw_file_sensor: bool = False  # start the nightly job when new raw files have landed in data_dir
    raw_file_sensor_interval_seconds: int = Field(60, ge=10)
    # DuckDB's buffer memory per connection, a size (6GB) or a share of RAM (25%); beyond it sorts,
    # joins and aggregates spill to disk
    duckdb_memory_limit: str = Field(
        "25%", pattern=r"^(\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)|(100|[1-9]\d?)(\.\d+)?%)$"
    )
    executor: Literal["in_process", "multiprocess", "celery"] = "in_process"
    max_processes: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)  # multiprocess: steps at once
    user_buckets: int | None = Field(None, gt=0)  # unset: 1 in-process, else max_processes
    celery_broker: str = "redis://127.0.0.1:6379/0"
    celery_backend: str = "redis://127.0.0.1:6379/0"
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, gt=0, lt=65536)
    api_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)  # lookup API worker processes
    api_pool_size: int = Field(2, gt=0)  # PostgreSQL connections each lookup API worker opens at most
    api_access_log: bool = False  # one log line per request (costs throughput)

    @model_validator(mode="before")
    @classmethod
    def _runtime_defaults(cls, data: Any) -> Any:
        """Unset paths default to their place under the runtime directory."""
        if isinstance(data, dict):
            runtime = Path(data.get("runtime_dir") or project_root() / "data")
            data = {**{name: runtime / leaf for name, leaf in _RUNTIME_PATHS.items()}, **data}
            data["runtime_dir"] = runtime
        return data

    @field_validator("runtime_dir", *_RUNTIME_PATHS, "mapping_path", "pii_allow_file")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return path.expanduser().resolve() if path is not None else None

    @field_validator("event_weights", "pii_allow", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """JSON settings arrive as text; a parse error becomes a validation error naming the variable."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc})") from exc
        return value

    @field_validator("event_weights")
    @classmethod
    def _over_default_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        """Configured weights override the defaults type by type; unnamed types keep theirs."""
        return {**DEFAULT_EVENT_WEIGHTS, **weights}

    @property
    def buckets(self) -> int:
        """User buckets the ranking fans out over: ``user_buckets``, else one per process the
        executor runs at once (one in-process)."""
        if self.user_buckets is not None:
            return self.user_buckets
        return 1 if self.executor == "in_process" else self.max_processes

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``PERSONALIZATION_<FIELD>`` variables; unset ones keep their default.
        ``overrides`` (field name -> value) win over the environment: a run's launchpad config;
        the settings fixed when the definitions load (:data:`LOAD_TIME_SETTINGS`) are refused.

        Raises ``ValueError`` naming every variable or override that does not parse.
        """
        unknown = sorted(set(overrides) - set(cls.model_fields))
        fixed = sorted(set(overrides) & LOAD_TIME_SETTINGS)
        if unknown or fixed:
            raise ValueError(
                "invalid run configuration: "
                + "; ".join(
                    [*(f"{name}: no such setting" for name in unknown)]
                    + [
                        f"{name}: fixed when the definitions load (set PERSONALIZATION_{name.upper()})"
                        for name in fixed
                    ]
                )
            )
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors())
            raise ValueError(f"invalid configuration: {problems}") from None


LOAD_TIME_SETTINGS = frozenset(
    {
        "runtime_dir",
        "warehouse_path",
        "embedded_pg_dir",
        "model_dir",
        "database_url",
        "jwt_secret",
        "jwt_issuer",
        "jwt_audience",
        "jwt_max_lifetime_seconds",
        "api_database_url",
        "run_lock_timeout_seconds",
        "nightly_cron",
        "weekly_cron",
        "cleanup_cron",
        "schedules_running",
        "raw_file_sensor",
        "raw_file_sensor_interval_seconds",
        "duckdb_memory_limit",
        "executor",
        "max_processes",
        "celery_broker",
        "celery_backend",
        "api_host",
        "api_port",
        "api_workers",
        "api_pool_size",
        "api_access_log",
    }
)
"""Settings the definitions take when they load (resources, executor, schedules, sensor) or the
endpoint reads: a run's configuration cannot change them."""

_SECRET_FIELDS = ("jwt_secret", "database_url", "api_database_url", "celery_broker", "celery_backend")


def _describe(error: Any) -> str:
    """One validation error as ``PERSONALIZATION_NAME: message (got value)``; secrets never echoed."""
    name = "_".join(map(str, error["loc"]))
    shown = "" if name in _SECRET_FIELDS else f" (got {error.get('input')!r})"
    return f"{PREFIX}{name.upper()}: {error['msg']}{shown}"
