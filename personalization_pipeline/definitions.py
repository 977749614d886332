"""The single Dagster Definitions: assets, checks, jobs, schedules, the raw-file sensor and resources."""

from __future__ import annotations

import time

import dagster as dg

from .assets import (
    catalog_screening,
    cleanup,
    evaluation,
    experiments,
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
from .assets.hygiene import annotated
from .checks import privacy_checks, regression_gate
from .config import Settings
from .ingest.arrivals import find_arrivals
from .resources import ModelStoreResource, RunSettings, ServingDatabaseResource, WarehouseResource

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
    experiments.experiment_exposures,
    experiments.experiment_assignments,
    experiments.experiment_results,
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
        description="Ingest -> dbt -> features -> models -> experiment assignment -> rankings -> evaluation -> "
        "publish -> privacy report, experiment results.",
    )
    weekly_job = dg.define_asset_job(
        "weekly",
        selection=dg.AssetSelection.groups(
            "features", "tuning", "models", "similarity", "per_user", "rankings", "evaluation", "serving"
        )
        | dg.AssetSelection.assets("experiment_assignments"),
        description="Rebuild features, tune, retrain the models, similar users, full evaluation, re-rank, publish.",
        config={"ops": {"ranker_model": {"config": {"always_retrain": True}}}},
    )
    cleanup_job = dg.define_asset_job(
        "cleanup",
        selection=dg.AssetSelection.groups("maintenance"),
        description="Retention: delete expired rankings, old features, evaluation, quarantine and raw events.",
    )

    return dg.Definitions(
        assets=annotated(all_assets, settings),
        asset_checks=[*privacy_checks, regression_gate],
        jobs=[nightly_job, weekly_job, cleanup_job],
        schedules=[
            dg.ScheduleDefinition(
                job=job,
                cron_schedule=cron,
                execution_timezone="UTC",
                default_status=_status(settings.schedules_running),
            )
            for job, cron in (
                (nightly_job, settings.nightly_cron),
                (weekly_job, settings.weekly_cron),
                (cleanup_job, settings.cleanup_cron),
            )
        ],
        sensors=[raw_file_sensor(nightly_job, settings)],
        resources={
            "warehouse": WarehouseResource(
                path=str(settings.warehouse_path),
                serving_db=serving_db,
                lock_timeout_seconds=settings.run_lock_timeout_seconds,
                memory_limit=settings.duckdb_memory_limit,
            ),
            "serving_db": serving_db,
            "model_store": ModelStoreResource(root=str(settings.model_dir)),
            "dbt": dbt_resource,
            "run_settings": RunSettings(),
        },
        executor=executor(settings),
    )


def _status(running: bool) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def raw_file_sensor(job: dg.UnresolvedAssetJobDefinition, settings: Settings) -> dg.SensorDefinition:
    """Starts ``job`` when new raw files have landed in the data directory (running by default when
    ``PERSONALIZATION_RAW_FILE_SENSOR`` is set; it can be turned on in the UI either way)."""

    @dg.sensor(
        name="raw_files",
        job=job,
        minimum_interval_seconds=settings.raw_file_sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.raw_file_sensor else dg.DefaultSensorStatus.STOPPED,
        description=f"Runs {job.name} when files in {settings.data_dir} are new or changed and have settled.",
    )
    def raw_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        found = find_arrivals(settings.data_dir, context.cursor, time.time())
        if found.waiting:
            return dg.SkipReason(f"waiting for {', '.join(found.waiting)} to settle")
        if not found.landed:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new raw files"), cursor=found.cursor)
        run = dg.RunRequest(run_key=found.run_key, tags={"raw_files": ",".join(found.landed)})
        return dg.SensorResult(run_requests=[run], cursor=found.cursor)

    return raw_files


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


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by the webserver, the daemon, ``run`` and every step process: built from the
    environment at each load, so a process sees the settings it was started with."""
    return build_definitions()
