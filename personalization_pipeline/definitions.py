"""The single Dagster Definitions: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

import dagster as dg

from .assets import (
    catalog_screening,
    cleanup,
    evaluation,
    features,
    ingest,
    models,
    per_user,
    privacy_report,
    ranker,
    rankings,
    serving,
    similarity,
    tuning,
)
from .assets.dbt import dbt_models, dbt_resource
from .checks import privacy_checks, regression_gate
from .config import Settings
from .resources import ModelStoreResource, ServingDatabaseResource, WarehouseResource

all_assets = [
    ingest.raw_tables,
    catalog_screening.withheld_items,
    dbt_models,
    features.user_features,
    tuning.tuned_settings,
    *models.model_assets,
    ranker.ranker_model,
    similarity.similar_users,
    per_user.per_user_models,
    rankings.user_rankings,
    rankings.global_rankings,
    evaluation.offline_eval,
    serving.serving_tables,
    privacy_report.privacy_report,
    cleanup.retention_cleanup,
]


def build_definitions() -> dg.Definitions:
    """Definitions wired to the environment's settings (paths, database, schedules).

    Assets read the same settings (``Settings.from_env()``) when they run, so the
    environment is the one source of configuration for a run.
    """
    settings = Settings.from_env()
    serving_db = ServingDatabaseResource.from_settings(settings)
    nightly_job = dg.define_asset_job(
        "nightly",
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("maintenance", "similarity", "per_user", "tuning"),
        description="Ingest -> dbt -> features -> models -> rankings -> evaluation -> publish -> privacy report.",
    )
    weekly_job = dg.define_asset_job(
        "weekly",
        selection=dg.AssetSelection.groups(
            "features", "tuning", "models", "similarity", "per_user", "rankings", "evaluation", "serving"
        ),
        description="Rebuild features, tune, retrain the models, similar users, full evaluation, re-rank, publish.",
        config={"ops": {"ranker_model": {"config": {"always_retrain": True}}}},
    )
    cleanup_job = dg.define_asset_job(
        "cleanup",
        selection=dg.AssetSelection.groups("maintenance"),
        description="Retention: delete expired rankings, old features, evaluation, quarantine and raw events.",
    )

    return dg.Definitions(
        assets=all_assets,
        asset_checks=[*privacy_checks, regression_gate],
        jobs=[nightly_job, weekly_job, cleanup_job],
        schedules=[
            dg.ScheduleDefinition(job=nightly_job, cron_schedule=settings.nightly_cron, execution_timezone="UTC"),
            dg.ScheduleDefinition(job=weekly_job, cron_schedule=settings.weekly_cron, execution_timezone="UTC"),
            dg.ScheduleDefinition(job=cleanup_job, cron_schedule=settings.cleanup_cron, execution_timezone="UTC"),
        ],
        resources={
            "warehouse": WarehouseResource(
                path=str(settings.warehouse_path),
                serving_db=serving_db,
                lock_timeout_seconds=settings.run_lock_timeout_seconds,
            ),
            "serving_db": serving_db,
            "model_store": ModelStoreResource(root=str(settings.model_dir)),
            "dbt": dbt_resource,
        },
        executor=executor(settings),
    )


def executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor ``PERSONALIZATION_EXECUTOR`` names. In-process (the default) runs every step
    in one process that holds the warehouse for the whole run. Multiprocess and Celery run each
    step in its own process, user buckets in parallel; the steps that open the warehouse take it
    one at a time (see :mod:`.warehouse_run`)."""
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": settings.max_processes})
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": settings.celery_broker, "backend": settings.celery_backend})
    return dg.in_process_executor


defs = build_definitions()
