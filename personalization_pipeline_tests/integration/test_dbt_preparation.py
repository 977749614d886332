"""dbt preparation: an explicit step, never a side effect of loading the definitions or of a run."""

import os
import subprocess
import sys

from personalization_pipeline.dbt_manifest import dbt_project, manifest_is_stale, prepare_manifest


def _target_entries() -> dict[str, float]:
    target = dbt_project.project_dir / dbt_project.target_path
    return {p.name: p.stat().st_mtime for p in target.iterdir() if p.name != "dbt.log"}


def test_loading_the_definitions_does_not_parse_and_a_dbt_build_leaves_nothing_under_target():
    prepare_manifest()
    assert not manifest_is_stale() and prepare_manifest() is False
    before = _target_entries()
    load = "from personalization_pipeline.definitions import defs; defs()"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    subprocess.run([sys.executable, "-c", load], check=True, env=env, timeout=300)
    assert _target_entries() == before  # no parse: the manifest untouched
