"""dbt preparation: an explicit step, never a side effect of loading the definitions or of a run."""

import os
import subprocess
import sys

from personalization_pipeline.dbt_manifest import dbt_project, manifest_is_stale, prepare_manifest

# Loads the definitions with every way to run dbt replaced by an exit with status 3.
LOAD_WITHOUT_DBT = """
import sys
from dagster_dbt import DbtCliResource, DbtProjectPreparer
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
def refuse(*args, **kwargs):
    sys.exit(3)
DbtCliResource.cli = refuse
DbtProjectPreparer.prepare = DagsterDbtProjectPreparer.prepare = refuse
from personalization_pipeline.definitions import defs
defs()
"""


def _target_entries() -> dict[str, float]:
    target = dbt_project.project_dir / dbt_project.target_path
    return {p.name: p.stat().st_mtime for p in target.iterdir() if p.name != "dbt.log"}


def test_loading_the_definitions_runs_no_dbt_command_and_leaves_target_untouched():
    prepare_manifest()
    assert not manifest_is_stale() and prepare_manifest() is False
    before = _target_entries()
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    loaded = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_DBT], env=env, timeout=300, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr.decode()[-2000:]
    assert _target_entries() == before
    dev = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_DBT], env={**env, "DAGSTER_IS_DEV_CLI": "1"}, timeout=300)
    assert dev.returncode == 3  # under `dg dev` / `dagster dev` the load prepares the project
