"""[similarity] Similar-user maps (weekly): neighbours and what they share.

``similar_users`` fans out over user buckets like ``user_rankings``: one step builds the neighbour
index once and stages it, one step per bucket searches its users' neighbours in its own process,
one step loads every bucket's neighbours into the warehouse and derives what they share.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from ..recsys.similarity import SearchParams
from ..resource_usage import measured
from ..resources import RunSettings, WarehouseResource
from ..steps.similar_users import load_similar_users, search_bucket, stage_similarity
from ..steps.tables import SIGNALS, USER_FEATURES
from .metering import fanned_out_usage

_UPSTREAM_INS = {"als_model": "als_model", "features": USER_FEATURES, "signals": SIGNALS}


@dataclass(frozen=True)
class SearchTask:
    """One bucket to search in the index staged under ``staging``; ``started`` is when the step began."""

    staging: str
    params: SearchParams
    bucket: int
    started: float
    searched: int
    approximate_recall: float | None


@dataclass(frozen=True)
class SearchResult:
    task: SearchTask
    rows: int
    usage: dict[str, float]


@dg.op(ins={name: dg.In(dg.Nothing) for name in _UPSTREAM_INS}, out=dg.DynamicOut(SearchTask), pool="warehouse")
def plan_similar_users(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> Iterator[dg.DynamicOutput]:
    """Build and stage the neighbour index of the opted-in users; one task per bucket."""
    started = time.time()
    settings = run_settings.resolve()
    params = SearchParams(k=settings.similar_users_k, threshold=settings.similar_users_threshold)
    staging = settings.staging_dir / context.run_id / "similar_users"
    with warehouse.connect() as con:
        stage = stage_similarity(con, staging, settings.buckets, params)
    context.log.info(f"searching {stage.searched} users' neighbours over {len(stage.buckets)} user bucket(s)")
    for bucket in stage.buckets:
        task = SearchTask(str(staging), params, bucket, started, stage.searched, stage.approximate_recall)
        yield dg.DynamicOutput(task, mapping_key=f"bucket_{bucket}")


@dg.op
def search_similar_bucket(context: dg.OpExecutionContext, task: SearchTask) -> SearchResult:
    """Search one bucket's users' neighbours in the staged index (never opens the warehouse)."""
    with measured() as usage:
        rows = search_bucket(Path(task.staging), task.bucket, task.params)
    context.log.info(f"bucket {task.bucket}: {rows} neighbour rows")
    return SearchResult(task, rows, usage)


@dg.op(out=dg.Out(dg.Nothing), pool="warehouse")
def load_similar_user_maps(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, results: list[SearchResult]
) -> None:
    """Load every bucket's neighbours with what they share; the asset's metadata."""
    task = results[0].task
    with measured() as usage, warehouse.connect() as con:
        counts = load_similar_users(con, Path(task.staging), datetime.now(UTC).replace(tzinfo=None))
    recall = task.approximate_recall
    context.add_output_metadata(
        {
            "dagster/row_count": counts.rows,
            "subjects": counts.subjects,
            "k": task.params.k,
            "threshold": task.params.threshold,
            "search": "exact" if recall is None else "hnsw",
            "searched_users": task.searched,
            **({} if recall is None else {"recall_vs_exact": round(recall, 4)}),
            "buckets": len(results),
            **fanned_out_usage(task.started, [r.usage for r in results] + [usage]),  # the buckets and the load
        }
    )


@dg.graph_asset(
    group_name="similarity",
    ins={name: dg.AssetIn(key=key, dagster_type=dg.Nothing) for name, key in _UPSTREAM_INS.items()},
)
def similar_users(**upstream: Any) -> Any:
    """Top-K most similar opted-in users per opted-in user (cosine of ALS user factors, above a threshold)."""
    tasks = plan_similar_users(**upstream)
    return load_similar_user_maps(tasks.map(search_similar_bucket).collect())
