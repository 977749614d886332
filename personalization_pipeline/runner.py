"""Run a job from this process as a run of the code location, and report what it produced (used by
``personalization-pipeline run`` and the benchmark)."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import dagster as dg
import duckdb
import psycopg
import uvicorn
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.execution.api import execute_run_iterator
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils.hosted_user_process import recon_job_from_origin

from .config import Settings
from .serving.app import create_app
from .serving.auth import mint_token
from .serving.database import login_summary, resolve_database_url
from .sqlutil import scalar

_LOGGED = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class JobResult:
    """Outcome of one in-process run: the first failure's message, each asset's metadata,
    whether each asset check passed (``"asset.check"``), when each step ran (:func:`_step_times`)
    and the rows it reported writing (``dagster/row_count`` of its materializations)."""

    success: bool
    run_id: str
    error: str | None
    metadata: dict[str, dict[str, Any]]
    checks: dict[str, bool]
    steps: dict[str, list[tuple[float, float]]]
    rows: dict[str, int]


LOCATION_NAME = "personalization_pipeline"
"""The code location's name, as workspace.yaml and ``[tool.dg]`` give it to the webserver."""
_REPOSITORY = "__repository__"  # the repository of a Definitions object


def code_location(instance: dg.DagsterInstance) -> InProcessCodeLocation:
    """The project's code location, loaded in this process under the webserver's location name,
    so runs created from it belong to its jobs (Runs list, job pages, timeline)."""
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name="personalization_pipeline.definitions", attribute="defs"
    )
    return InProcessCodeLocation(InProcessCodeLocationOrigin(target, location_name=LOCATION_NAME), instance=instance)


def run_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run's config: INFO logging and, when given, settings ``overrides`` for this run only
    (the ``run_settings`` resource, as the launchpad sets it)."""
    resources = {"resources": {"run_settings": {"config": {"overrides": dict(overrides)}}}} if overrides else {}
    return {**_LOGGED, **resources}


def create_run(
    instance: dg.DagsterInstance,
    location: InProcessCodeLocation,
    job_name: str,
    assets: Sequence[str] | None,
    config: Mapping[str, Any] = _LOGGED,
) -> DagsterRun:
    """A run of ``job_name`` (only ``assets`` of it when given) with run ``config``, recorded with
    the location's origin, as the UI's launchpad records one."""
    repository = location.get_repository(_REPOSITORY)
    selection = frozenset(dg.AssetKey(name) for name in assets) if assets is not None else None
    selector = JobSubsetSelector(LOCATION_NAME, _REPOSITORY, job_name, None, asset_selection=selection)
    job = location.get_job(selector)
    plan = location.get_execution_plan(job, config, step_keys_to_execute=None, known_state=None, instance=instance)
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=config,
        resolved_op_selection=job.resolved_op_selection,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**job.tags, "source": "personalization-pipeline run"},
        job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=job.parent_job_snapshot,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=selection,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )


def run_job(
    job_name: str,
    assets: Sequence[str] | None = None,
    on_event: Callable[[dg.DagsterEvent], None] | None = None,
    overrides: Mapping[str, Any] | None = None,
    home: Path | None = None,
) -> JobResult:
    """Run ``job_name`` (only ``assets`` of it when given) on the environment's settings with
    ``overrides`` on top (this run only), from this process, with the job's executor (in-process,
    multiprocess or Celery): no daemon needed, yet the run is the code location's, as if launched
    from the UI. ``on_event`` sees each event as it happens. The instance is ``home``'s when
    given, else DAGSTER_HOME's when set, else a temporary one."""
    with ExitStack() as stack:
        if home is not None:
            instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        elif os.environ.get("DAGSTER_HOME"):
            instance = stack.enter_context(dg.DagsterInstance.get())
        else:
            temp = stack.enter_context(TemporaryDirectory())
            instance = stack.enter_context(
                dg.DagsterInstance.local_temp(temp, overrides={"telemetry": {"enabled": False}})
            )
        location = stack.enter_context(code_location(instance))
        run = create_run(instance, location, job_name, assets, run_config(overrides))
        assert run.job_code_origin is not None
        # reconstructed jobs are cached per process: load this run's from the environment it runs in
        ReconstructableJob.get_definition.cache_clear()
        ReconstructableJob.get_repository_definition.cache_clear()
        events = []
        for event in execute_run_iterator(recon_job_from_origin(run.job_code_origin), run, instance):
            events.append(event)
            if on_event is not None:
                on_event(event)
        finished = instance.get_run_by_id(run.run_id)
        success = finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS
        return _job_result(instance, run.run_id, success, events)


def _job_result(instance: dg.DagsterInstance, run_id: str, success: bool, events: list[dg.DagsterEvent]) -> JobResult:
    evaluations = [
        e.asset_check_evaluation_data for e in events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    checks = {f"{c.asset_key.to_user_string()}.{c.check_name}": c.passed for c in evaluations}
    error = None
    if not success:
        failed_checks = [
            f"{c.asset_key.to_user_string()}.{c.check_name}: {c.description or 'failed'}"
            for c in evaluations
            if not c.passed
        ]
        error = "\n".join([first_failure(events), *failed_checks])
    metadata: dict[str, dict[str, Any]] = {}
    rows: dict[str, int] = {}
    for event in events:
        if event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION:
            continue
        materialization = event.step_materialization_data.materialization
        values = {k: v.value for k, v in materialization.metadata.items()}
        metadata[materialization.asset_key.to_user_string()] = values
        count = values.get("dagster/row_count")
        if isinstance(count, int) and event.step_key:
            rows[_asset_of(event.step_key)] = rows.get(_asset_of(event.step_key), 0) + count
    return JobResult(success, run_id, error, metadata, checks, _step_times(instance, run_id), rows)


def _asset_of(step_key: str) -> str:
    """The asset a step belongs to: a graph-backed asset's steps (``user_rankings.plan...``) count as one."""
    return step_key.split(".", 1)[0]


def _step_times(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[tuple[float, float]]]:
    """When each step of the run ran, from its event log: (start, end) epoch seconds, ascending. A
    graph-backed asset's steps count as one, their spans merged where they overlap (parallel
    buckets): other steps the executor ran between them are not its time."""
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    done = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts.setdefault(entry.step_key, entry.timestamp)
        elif event.event_type in done and entry.step_key in starts:
            spans[entry.step_key] = (starts[entry.step_key], entry.timestamp)
    for key, start in starts.items():
        spans.setdefault(key, (start, start))  # started, never ended
    return asset_spans(spans)


def asset_spans(spans: dict[str, tuple[float, float]]) -> dict[str, list[tuple[float, float]]]:
    """Each step key's (start, end) grouped by asset (:func:`_asset_of`), overlapping spans merged,
    ascending."""
    merged: dict[str, list[tuple[float, float]]] = {}
    for key, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        own = merged.setdefault(_asset_of(key), [])
        if own and start <= own[-1][1]:
            own[-1] = (own[-1][0], max(own[-1][1], end))
        else:
            own.append((start, end))
    return merged


def root_cause(event: dg.DagsterEvent) -> str:
    """The innermost cause of a step or run failure event (it names the file and column)."""
    info = getattr(event.event_specific_data, "error", None)
    while info is not None and info.cause is not None:
        info = info.cause
    return re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", info.message.strip()) if info else "failed"


def first_failure(events: list[dg.DagsterEvent]) -> str:
    """``step <key>: <root cause>`` of the first failed step, or the run's own failure (a resource
    that could not start, e.g. a warehouse held by another run)."""
    failed = next((e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE), None)
    if failed is not None:
        return f"step {failed.step_key}: {root_cause(failed)}"
    run_failure = next((e for e in events if e.event_type == dg.DagsterEventType.PIPELINE_FAILURE), None)
    return f"run: {root_cause(run_failure)}" if run_failure is not None else "run: failed"


def run_notes(settings: Settings, metadata: dict[str, dict[str, Any]]) -> dict[str, object]:
    """What ingest withheld that a user should know about: expired events and fail-closed opt-outs."""
    notes: dict[str, object] = {}
    expired = metadata.get("raw_interactions", {}).get("expired_by_retention", 0)
    if expired:
        newest = metadata["raw_interactions"].get("newest_expired_event")
        notes["events older than the raw retention (not loaded)"] = (
            f"{expired} (newest {newest}; PERSONALIZATION_RAW_RETENTION_DAYS={settings.raw_retention_days:g}, "
            "0 keeps every event)"
        )
    screening = metadata.get("withheld_items")
    if screening is not None:
        first = ", ".join(screening["first_withheld"][:5])
        notes["catalogue items withheld (a served value looked like PII)"] = f"{screening['withheld_items']}" + (
            f" (first: {first}; full list: {screening['full_list']})" if first else ""
        )
    if "raw_settings" in metadata:
        causes = metadata["raw_settings"].get("opted_out_fail_closed_by_cause") or {}
        shown = ", ".join(f"{cause}: {n}" for cause, n in sorted(causes.items())) or "none"
        notes["opted out for this run: consent unreadable or conflicting"] = shown
    return notes


def summarize(settings: Settings, metadata: dict[str, dict[str, Any]]) -> dict[str, object]:
    """Row counts, quarantine, what ingest withheld, latest metrics and where the results are."""
    url = resolve_database_url(settings)
    summary: dict[str, object] = {}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in ("raw_interactions", "raw_items", "raw_users", "user_features", "user_rankings"):
            summary[f"rows: {table}"] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        summary["quarantined (last batch)"] = con.execute(
            "SELECT count(*) FROM quarantine WHERE batch_id = (SELECT max(batch_id) FROM quarantine)"
        ).fetchall()[0][0]
        for model, metric, k, value in con.execute(
            "SELECT model_name, metric, k, value FROM eval_history WHERE run_id = "
            "(SELECT arg_max(run_id, computed_at) FROM eval_history) AND metric IN ('ndcg', 'precision', 'recall', "
            "'map', 'catalog_coverage') ORDER BY model_name, metric"
        ).fetchall():
            summary[f"{model} {metric}@{k}"] = round(value, 4)
    summary.update(run_notes(settings, metadata))
    with psycopg.connect(url) as conn:
        summary["served rankings (personalization_ranks)"] = scalar(conn, "SELECT count(*) FROM personalization_ranks")
    summary["warehouse (DuckDB)"] = str(settings.warehouse_path)
    summary["serving database (PostgreSQL)"] = login_summary(url)
    return summary


@contextmanager
def serving_in_background(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port for the duration; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the lookup endpoint did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class SampleLookup:
    """One ranking read over HTTP: the request line with its status, and the decoded body."""

    request: str
    response: dict[str, Any]


def sample_lookup(settings: Settings) -> SampleLookup | None:
    """Read one user's ranking over HTTP from the lookup endpoint, as a downstream app would."""
    url = resolve_database_url(settings)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT user_id, scope FROM personalization_ranks WHERE valid_until > now() ORDER BY user_id, scope LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    user_id, scope = row
    token = mint_token(settings.jwt_secret, user_id, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    path = f"/v1/rankings/{scope}?limit=5"
    with serving_in_background(create_app(url, settings)) as base:
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, json.loads(response.read())
    return SampleLookup(f"GET {path} as user {user_id} -> {status}", body)
