"""[dbt] Staging and mart models of ``dbt_project/``, with dbt tests as asset checks."""

import json
import os
import shutil
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from ..config import Settings, project_root
from ..resources import WarehouseResource

def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (works without an activated venv)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


dbt_project = DbtProject(project_dir=project_root() / "dbt_project", profiles_dir=project_root() / "dbt_project")
dbt_resource = DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
if not dbt_project.manifest_path.exists():  # a fresh clone: parse once to get the manifest
    dbt_resource.cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()


class _Translator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """dbt vars derived from the settings (event weights, time decay)."""
    return {"event_weights": settings.event_weights, "half_life_days": settings.half_life_days}


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=_Translator(),
            pool="warehouse")
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """Build the staging and mart models and run their tests."""
    os.environ["PERSONALIZATION_WAREHOUSE_PATH"] = warehouse.path  # read by dbt_project/profiles.yml
    args = ["build", "--vars", json.dumps(dbt_vars(Settings.from_env()))]
    yield from dbt.cli(args, context=context).stream()
