"""[dbt] Staging and mart models of ``dbt_project/``, with dbt tests as asset checks."""

import json
from collections.abc import Mapping
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from ..config import Settings
from ..dbt_manifest import dbt_project
from ..resources import RunSettings, WarehouseResource
from ..sqlutil import TableDescription, describe_tables
from ..steps.registry import with_tuned

dbt_resource = DbtCliResource(project_dir=dbt_project)
dbt_project.prepare_if_dev()


class _Translator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"


def dbt_vars(settings: Settings, warehouse_path: str) -> dict[str, Any]:
    """dbt vars: the warehouse file and DuckDB's memory limit (read by profiles.yml), event weights,
    time decay and the experiments' attribution window."""
    return {
        "warehouse_path": warehouse_path,
        "duckdb_memory_limit": settings.duckdb_memory_limit,
        "event_weights": settings.event_weights,
        "half_life_days": "auto" if settings.half_life_days is None else settings.half_life_days,
        "half_life_span_fraction": settings.half_life_span_fraction,
        "attribution_window_hours": settings.experiment_attribution_hours,
    }


@dbt_assets(
    manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=_Translator(), pool="warehouse"
)
def dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, run_settings: RunSettings
):
    """Build the staging and mart models and run their tests (time decay: the last tuned values
    where the environment sets none); each model's row count and column types go to its metadata,
    read once dbt has closed the warehouse (an adapter connection of dbt-duckdb in this process
    would hold the file)."""
    with warehouse.connect() as con:  # closed before dbt opens the file
        settings = with_tuned(con, run_settings.resolve())
    args = ["build", "--vars", json.dumps(dbt_vars(settings, warehouse.active_path))]
    with TemporaryDirectory(prefix="dbt-") as target:  # run artifacts: nothing accumulates under target/
        events = list(dbt.cli(args, context=context, target_path=Path(target)).stream())
    built = [event.output_name for event in events if isinstance(event, dg.Output)]  # model names (default keys)
    with warehouse.connect(read_only=True) as con:
        described = describe_tables(con, built)
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in described:
            event = event.with_metadata({**event.metadata, **model_metadata(described[event.output_name])})
        yield event


def model_metadata(table: TableDescription) -> dict[str, Any]:
    """A built model's row count (tables only: counting a view would run it) and column types."""
    columns = [dg.TableColumn(name, type_) for name, type_ in table.columns]
    counted = {"dagster/row_count": table.rows} if table.rows is not None else {}
    return {**counted, "dagster/column_schema": dg.TableSchema(columns=columns)}
