"""A run started from the command line belongs to the code location's job, as the UI reads it."""

import io
from pathlib import Path

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql
from rich.console import Console

from personalization_pipeline.config import project_root
from personalization_pipeline.progress import StepProgress
from personalization_pipeline.runner import LOCATION_NAME, run_job
from personalization_pipeline_tests.pipeline_support import pipeline_env

JOB_RUNS = """
query JobRuns($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { runs { runId status } }
  }
}
"""


def test_a_run_from_the_command_line_is_listed_under_its_job_in_the_ui(tmp_path: Path, clean_pg: str):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with pipeline_env(tmp_path / "runtime", clean_pg) as env:
        env.setenv("DAGSTER_HOME", str(home))
        terminal = Console(file=io.StringIO(), width=200)
        with terminal.status("cleanup") as status:
            result = run_job("cleanup", on_event=StepProgress(terminal, status, "cleanup"))
        assert result.success, result.error
        printed = terminal.file.getvalue().splitlines()
        assert printed[0].split() == ["started", "retention_cleanup"]
        done = printed[1].split()
        assert done[:2] == ["done", "retention_cleanup"] and done[2].endswith("s") and done[-1] == "MB"
        with (
            dg.DagsterInstance.get() as instance,
            define_out_of_process_context(str(project_root() / "workspace.yaml"), None, instance) as context,
        ):
            assert [location.name for location in context.code_locations] == [LOCATION_NAME]
            selector = {"repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__"}
            listed = {
                job: execute_dagster_graphql(context, JOB_RUNS, {"selector": {**selector, "pipelineName": job}}).data
                for job in ("cleanup", "nightly")
            }
    assert listed["cleanup"]["pipelineOrError"]["runs"] == [{"runId": result.run_id, "status": "SUCCESS"}]
    assert listed["nightly"]["pipelineOrError"]["runs"] == []
