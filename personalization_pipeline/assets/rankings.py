"""[rankings] Top-N per user and scope from the best evaluated personal model; popularity per scope for fallback.

``user_rankings`` fans out over user buckets: one step stages the inputs, one step per bucket ranks
its users in its own process (in parallel under the multiprocess or a cluster executor), one step
loads every bucket's rankings into the warehouse.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from ..recsys.registry import PERSONAL_MODELS
from ..resource_usage import measured
from ..resources import ModelStoreResource, RunSettings, WarehouseResource
from ..sqlutil import scalar
from ..steps.buckets import RankingPlan, load_outputs, rank_bucket, stage_inputs
from ..steps.rank import RankingCounts, choose_serving_model, current_per_user, write_global_rankings
from ..steps.registry import latest_trained
from ..steps.rerank import RANKER, rerank_cost_reason
from ..steps.tables import ACTIVITY, GLOBAL_RANKINGS, ITEMS
from .metering import fanned_out_usage, metered
from .models import MODEL_ASSET_KEYS

_UPSTREAM = (
    *MODEL_ASSET_KEYS,
    "ranker_model",
    "offline_eval",
    "per_user_models",
    "experiment_assignments",
    ACTIVITY,
    ITEMS,
)


@dataclass(frozen=True)
class BucketTask:
    """One bucket to rank under ``plan``; ``started`` is when the ranking began (epoch seconds);
    ``ranker_skipped``: why the re-ranker was not considered (its cost budget), if so."""

    plan: RankingPlan
    bucket: int
    started: float
    ranker_skipped: str | None = None


@dataclass(frozen=True)
class BucketResult:
    """What one bucket's step ranked and what it cost."""

    task: BucketTask
    counts: RankingCounts
    usage: dict[str, float]


_UPSTREAM_INS = {f"upstream_{i}": key for i, key in enumerate(_UPSTREAM)}


@dg.op(ins={name: dg.In(dg.Nothing) for name in _UPSTREAM_INS}, out=dg.DynamicOut(BucketTask), pool="warehouse")
def plan_user_rankings(
    context: dg.OpExecutionContext,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
    run_settings: RunSettings,
) -> Iterator[dg.DynamicOutput[BucketTask]]:
    """Choose the serving model, prune the per-user bundle, stage the inputs; one task per bucket."""
    started = time.time()
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = run_settings.resolve()
    staging = settings.staging_dir / context.run_id / "user_rankings"
    with warehouse.connect() as con:
        registry = latest_trained(con)
        over_budget = rerank_cost_reason(con, settings)
        names = PERSONAL_MODELS if over_budget is not None else (*PERSONAL_MODELS, RANKER)
        entry = choose_serving_model(con, registry, names, settings.ranker_margin_stderrs)
        per_user = current_per_user(con, registry.get("per_user"), Path(model_store.root), context.run_id, now)
        registry = latest_trained(con)  # with the pruned bundle
        buckets = stage_inputs(con, staging, settings.buckets, settings, entry, registry)
    plan = RankingPlan(str(staging), entry, registry, registry["per_user"] if per_user is not None else None)
    if over_budget is not None:
        context.log.warning(f"no re-ranking: {over_budget}")
    context.log.info(f"ranking with {entry.model_name} {entry.model_version} over {len(buckets)} user bucket(s)")
    for bucket in buckets:
        yield dg.DynamicOutput(BucketTask(plan, bucket, started, over_budget), mapping_key=f"bucket_{bucket}")


@dg.op
def rank_user_bucket(context: dg.OpExecutionContext, task: BucketTask, run_settings: RunSettings) -> BucketResult:
    """Rank one bucket's users from the staged inputs (never opens the warehouse)."""
    with measured() as usage:
        counts = rank_bucket(task.plan, task.bucket, run_settings.resolve())
    context.log.info(f"bucket {task.bucket}: {counts.users} users, {counts.rows} rows")
    return BucketResult(task, counts, usage)


@dg.op(out=dg.Out(dg.Nothing), pool="warehouse")
def load_user_rankings(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, results: list[BucketResult]
) -> None:
    """Load every bucket's rankings and rationale into the warehouse; the asset's metadata."""
    task = results[0].task
    plan = task.plan
    counts = sum((r.counts for r in results), RankingCounts())  # the buckets hold disjoint users
    with measured() as usage, warehouse.connect() as con:
        load_outputs(con, Path(plan.staging), counts.in_key_order)  # one bucket with rows: no sort needed
    context.add_output_metadata(
        {
            "serving_model": plan.entry.model_name,
            "model_version": plan.entry.model_version,
            "per_user_models": counts.per_user_users,
            "per_user_version": plan.per_user.model_version if plan.per_user is not None else "(none)",
            "users": counts.users,
            "users_per_experiment_variant": counts.variant_users,
            "buckets": len(results),
            "dagster/row_count": counts.rows,
            **({"ranker_skipped_because": task.ranker_skipped} if task.ranker_skipped else {}),
            **fanned_out_usage(task.started, [r.usage for r in results] + [usage]),  # the buckets and the load
        }
    )


@dg.graph_asset(
    group_name="rankings",
    ins={name: dg.AssetIn(key=key, dagster_type=dg.Nothing) for name, key in _UPSTREAM_INS.items()},
)
def user_rankings(**upstream: Any) -> Any:
    """Top-N items per opted-in user and scope, seen items and consistently dismissed categories
    removed, from the best personal model of this run's offline evaluation, or the re-ranker over
    every source's candidates (diversified, rationale tags in ``rank_rationale``) when it beats that
    model clearly; users with a kept per-user model are scored by it. Users of the running
    experiment get their variant's ranking configuration, and each row names the variant."""
    tasks = plan_user_rankings(**upstream)
    return load_user_rankings(tasks.map(rank_user_bucket).collect())


@dg.asset(group_name="rankings", deps=["popularity_model", ITEMS], pool="warehouse")
@metered
def global_rankings(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Non-personalized top-N per scope: cold start, opted-out and expired fallbacks."""
    with warehouse.connect() as con:
        scopes = write_global_rankings(con, latest_trained(con)["popularity"], run_settings.resolve().top_n)
        rows = scalar(con, f"SELECT count(*) FROM {GLOBAL_RANKINGS}")
    return dg.MaterializeResult(metadata={"scopes": scopes, "dagster/row_count": rows})
