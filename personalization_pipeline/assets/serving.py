"""[serving] Atomic publish of rankings, fallbacks, features, models and metrics to PostgreSQL.

``serving_tables`` fans out over user buckets like ``user_rankings``: one step stages each per-user
frame by bucket (Parquet) and creates the load tables, one step per bucket copies its users' rows
into them in its own process, one step swaps them in with the shared frames in one transaction.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ..resource_usage import measured
from ..resources import RunSettings, ServingDatabaseResource, WarehouseResource
from ..serving.publish import LoadTables, create_load_tables, load_rows, swap_in
from ..serving.snapshot import bucket_frames, shared_frames, stage_per_user
from ..steps.buckets import remove_staging
from ..steps.registry import latest_trained
from ..steps.tables import GLOBAL_RANKINGS, SIMILAR_USERS, USER_FEATURES, USER_RANKINGS
from .hygiene import DB_RETRY, transient_only
from .metering import fanned_out_usage
from .models import MODEL_ASSET_KEYS

_UPSTREAM = (USER_RANKINGS, GLOBAL_RANKINGS, USER_FEATURES, "offline_eval", SIMILAR_USERS, *MODEL_ASSET_KEYS)
_UPSTREAM_INS = {f"upstream_{i}": key for i, key in enumerate(_UPSTREAM)}


@dataclass(frozen=True)
class LoadTask:
    """One bucket's per-user rows to copy from ``staging`` into ``tables``; the shared frames ride
    along to the swap. ``started`` is when the publish began (epoch seconds)."""

    staging: str
    tables: LoadTables
    bucket: int
    shared: dict[str, pd.DataFrame]
    valid_until: datetime
    started: float


@dataclass(frozen=True)
class LoadResult:
    task: LoadTask
    rows: dict[str, int]
    usage: dict[str, float]


@dg.op(
    ins={name: dg.In(dg.Nothing) for name in _UPSTREAM_INS},
    out=dg.DynamicOut(LoadTask),
    pool="warehouse",
    retry_policy=DB_RETRY,
)
@transient_only
def plan_publish(
    context: dg.OpExecutionContext,
    warehouse: WarehouseResource,
    serving_db: ServingDatabaseResource,
    run_settings: RunSettings,
) -> Iterator[dg.DynamicOutput[LoadTask]]:
    """Stage the per-user frames by user bucket, read the shared ones, create the load tables."""
    started = time.time()
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = run_settings.resolve()
    ttl = timedelta(hours=settings.ranking_ttl_hours)
    staging = settings.staging_dir / context.run_id / "serving_tables"
    remove_staging(staging)
    staging.mkdir(parents=True)
    with warehouse.connect(read_only=True) as con:
        names, buckets = stage_per_user(con, now, ttl, staging, settings.buckets)
        shared = shared_frames(con, now, ttl, latest_trained(con))
    tables = create_load_tables(serving_db.get_url(), context.run_id.replace("-", "")[:16], names)
    context.log.info(f"publishing {', '.join(names)} over {len(buckets)} user bucket(s)")
    for bucket in buckets:
        task = LoadTask(str(staging), tables, bucket, shared, now + ttl, started)
        yield dg.DynamicOutput(task, mapping_key=f"bucket_{bucket}")


@dg.op(retry_policy=DB_RETRY)
@transient_only
def load_publish_bucket(
    context: dg.OpExecutionContext, serving_db: ServingDatabaseResource, task: LoadTask
) -> LoadResult:
    """Copy one bucket's per-user rows into the load tables (never opens the warehouse)."""
    with measured() as usage:
        frames = bucket_frames(Path(task.staging), task.bucket, task.tables.names)
        rows = load_rows(serving_db.get_url(), task.tables, frames)
    context.log.info(f"bucket {task.bucket}: " + ", ".join(f"{n} {rows[n]} rows" for n in rows))
    return LoadResult(task, rows, usage)


@dg.op(out=dg.Out(dg.Nothing), retry_policy=DB_RETRY)
@transient_only
def swap_published(
    context: dg.OpExecutionContext, serving_db: ServingDatabaseResource, results: list[LoadResult]
) -> None:
    """Swap the loaded tables in with the shared frames, in one transaction; the asset's metadata."""
    task = results[0].task
    with measured() as usage:
        published = swap_in(serving_db.get_url(), task.tables, task.shared)
    remove_staging(Path(task.staging))
    loaded = {name: sum(r.rows.get(name, 0) for r in results) for name in task.tables.names} | published.loaded
    context.add_output_metadata(
        {
            **{f"rows/{table}": n for table, n in loaded.items()},
            "dagster/row_count": loaded.get("ranks", 0),
            "dropped_at_commit_opted_out": sum(published.dropped_opted_out.values()),
            "dropped_at_commit_opted_out_by_table": published.dropped_opted_out,
            "valid_until": str(task.valid_until),
            "buckets": len(results),
            **fanned_out_usage(task.started, [r.usage for r in results] + [usage]),
        }
    )


@dg.graph_asset(
    group_name="serving",
    ins={name: dg.AssetIn(key=key, dagster_type=dg.Nothing) for name, key in _UPSTREAM_INS.items()},
)
def serving_tables(**upstream: Any) -> Any:
    """Replace the served rankings, features and maps in one transaction: readers see the old or the
    new set, never a mix."""
    tasks = plan_publish(**upstream)
    return swap_published(tasks.map(load_publish_bucket).collect())
