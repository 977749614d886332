"""What every asset declares beyond its computation: kinds, owners, code version, freshness policy,
and the retry policy of the steps that talk to PostgreSQL."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from importlib.metadata import version
from itertools import islice, pairwise
from typing import Any

import dagster as dg
import psycopg
from dagster._utils.schedules import cron_string_iterator

from ..config import Settings

OWNERS = ["team:personalization"]
CODE_VERSION = version("personalization_pipeline")
FRESHNESS_GRACE = timedelta(hours=3)  # a run's own duration on top of the schedule's interval

_KINDS: dict[str, set[str]] = {
    "raw_": {"python", "duckdb", "postgres"},  # consent is read from and seeded into the serving database
    "ranker_model": {"python", "lightgbm", "duckdb"},
    "serving_tables": {"python", "duckdb", "postgres"},
    "retention_cleanup": {"python", "duckdb", "postgres"},
    "experiment_": {"python", "duckdb", "postgres"},  # definitions, assignments, exposures and results live there
}
_WEEKLY_GROUPS = {"tuning", "similarity", "per_user"}

DB_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
"""For steps that talk to PostgreSQL; with :func:`transient_only`, only a lost or refused
connection, a serialization failure or a deadlock is retried (psycopg's OperationalError)."""


def transient_only(compute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an op function under :data:`DB_RETRY`: an error other than psycopg's OperationalError
    fails the step at once instead of being retried (its cause kept)."""

    def failure(exc: Exception) -> dg.Failure:
        return dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False)

    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from compute(*args, **kwargs)
            except (psycopg.OperationalError, dg.Failure):
                raise
            except Exception as exc:
                raise failure(exc) from exc

        return generator

    @functools.wraps(compute)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return compute(*args, **kwargs)
        except (psycopg.OperationalError, dg.Failure):
            raise
        except Exception as exc:
            raise failure(exc) from exc

    return wrapper


def longest_interval(cron: str, timezone: str = "UTC", ticks: int = 64) -> timedelta:
    """The longest time between two consecutive ticks of ``cron`` over its next ``ticks``."""
    times = list(islice(cron_string_iterator(time.time(), cron, timezone), ticks))
    return max(later - earlier for earlier, later in pairwise(times))


def _kinds(key: str) -> set[str]:
    return next((kinds for prefix, kinds in _KINDS.items() if key.startswith(prefix)), {"python", "duckdb"})


def annotated(assets: Iterable[dg.AssetsDefinition], settings: Settings) -> Sequence[dg.AssetsDefinition]:
    """``assets`` with owners, code version, a freshness policy from the schedule that materializes
    them (its longest interval plus :data:`FRESHNESS_GRACE`) and, for Python assets, kinds (dbt
    assets keep dagster-dbt's dbt and duckdb)."""
    windows = {
        "maintenance": longest_interval(settings.cleanup_cron),
        **{group: longest_interval(settings.weekly_cron) for group in _WEEKLY_GROUPS},
    }
    nightly = longest_interval(settings.nightly_cron)

    def annotate(spec: dg.AssetSpec) -> dg.AssetSpec:
        window = windows.get(spec.group_name or "", nightly) + FRESHNESS_GRACE
        kinds = spec.kinds or _kinds(spec.key.to_user_string())
        return spec.replace_attributes(
            owners=OWNERS,
            code_version=spec.code_version or CODE_VERSION,
            kinds=kinds,
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=window),
        )

    return [asset for asset in dg.map_asset_specs(annotate, assets) if isinstance(asset, dg.AssetsDefinition)]
