"""[ingest] Raw files into the warehouse; consent from the serving database wins over the file,
which only seeds it."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ..ingest import IngestOptions, load_mapping, load_raw_tables
from ..privacy.retention import retention_period
from ..resources import RunSettings, ServingDatabaseResource, WarehouseResource
from ..serving.user_settings import read_settings, seed_settings
from .metering import metered

RAW_TABLES = ("interactions", "items", "users", "settings")


class IngestConfig(dg.Config):
    """Run config for ingest. Paths come from the environment only, so that every step of a
    run (the privacy checks re-read the raw users file) sees the same input."""

    strict_items: bool = False


@dg.multi_asset(
    specs=[
        dg.AssetSpec(f"raw_{name}", group_name="ingest", description=f"Raw {name}, contract columns only.")
        for name in RAW_TABLES
    ],
    pool="warehouse",
)
@metered
def raw_tables(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    warehouse: WarehouseResource,
    serving_db: ServingDatabaseResource,
    run_settings: RunSettings,
):
    """Load the raw files, quarantining malformed rows with a reason."""
    settings = run_settings.resolve()
    data_dir = settings.data_dir
    mapping = load_mapping(settings.mapping_path)
    consent = read_settings(serving_db.get_url())
    with warehouse.connect() as con:
        options = IngestOptions(
            now=datetime.now(UTC).replace(tzinfo=None),
            future_tolerance=timedelta(minutes=settings.future_tolerance_minutes),
            strict_items=config.strict_items or settings.strict_items,
            raw_retention=retention_period(settings.raw_retention_days),
            encoding=settings.input_encoding,
        )
        report = load_raw_tables(con, data_dir, mapping, options, settings_override=consent)
        # A fail-closed opt-out holds for this run only: it is never written to the serving database.
        readable = con.execute("SELECT * FROM raw_settings WHERE fail_closed IS NULL").df()
        seeded = seed_settings(serving_db.get_url(), readable)
    context.log.info(f"quarantined {report.quarantined_total} rows in batch {report.batch_id}")
    for name in RAW_TABLES:
        quarantined = report.quarantined.get(name, {})
        yield dg.MaterializeResult(
            asset_key=f"raw_{name}",
            metadata={
                "source_file": report.files.get(name, "(none: derived or defaults)"),
                "dagster/row_count": report.rows.get(name, 0),
                "quarantined": sum(quarantined.values()),
                "quarantined_by_reason": quarantined,
                "dropped_columns": report.dropped_columns.get(name, []),
                **(
                    {"expired_by_retention": report.expired, "newest_expired_event": str(report.newest_expired)}
                    if name == "interactions"
                    else {}
                ),
                **(
                    {
                        "seeded_into_serving_database": seeded,
                        "opted_out_fail_closed": sum(report.consent_fail_closed.values()),
                        "opted_out_fail_closed_by_cause": report.consent_fail_closed,
                    }
                    if name == "settings"
                    else {}
                ),
                "batch_id": report.batch_id,
            },
        )
