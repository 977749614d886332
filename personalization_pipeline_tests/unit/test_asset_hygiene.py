"""Kinds, owners, code version, freshness and retries declared on the assets."""

import socket
from datetime import timedelta

import dagster as dg
import psycopg
import pytest

from personalization_pipeline.assets.hygiene import CODE_VERSION, DB_RETRY, longest_interval, transient_only
from personalization_pipeline.definitions import build_definitions

WEEKLY_ONLY = {"tuned_settings", "similar_users", "per_user_models"}


@pytest.fixture(scope="module")
def graph():
    return build_definitions().resolve_asset_graph()


def test_every_asset_declares_owner_kinds_code_version_and_a_freshness_window_from_its_schedule(graph):
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        assert node.owners == ["team:personalization"], name
        assert 1 <= len(node.kinds) <= 3 and "duckdb" in node.kinds, name
        assert node.code_version, name
        window = node.freshness_policy.fail_window.to_timedelta()
        expected = timedelta(days=7) if name in WEEKLY_ONLY else timedelta(days=1)
        assert expected < window <= expected + timedelta(hours=3), name
    assert graph.get(dg.AssetKey("als_model")).code_version == CODE_VERSION
    assert {"dbt"} <= graph.get(dg.AssetKey("stg_interactions")).kinds
    assert {"postgres"} <= graph.get(dg.AssetKey("serving_tables")).kinds
    assert {"lightgbm"} <= graph.get(dg.AssetKey("ranker_model")).kinds


def test_longest_interval_of_common_schedules():
    assert longest_interval("0 2 * * *") == timedelta(days=1)
    assert longest_interval("0 3 * * 0") == timedelta(days=7)
    assert longest_interval("0 6,18 * * *") == timedelta(hours=12)


def test_the_steps_that_write_postgres_retry_under_the_database_policy():
    defs = build_definitions()
    nightly, cleanup = defs.resolve_job_def("nightly"), defs.resolve_job_def("cleanup")
    publish = nightly.graph.node_named("serving_tables").definition
    for op in ("plan_publish", "load_publish_bucket", "swap_published"):
        assert publish.node_named(op).definition.retry_policy == DB_RETRY, op
    assert cleanup.graph.node_named("retention_cleanup").definition.retry_policy == DB_RETRY
    for asset in ("experiment_exposures", "experiment_assignments", "experiment_results"):
        assert nightly.graph.node_named(asset).definition.retry_policy == DB_RETRY, asset


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


QUICK = dg.RetryPolicy(max_retries=2, delay=0)


@dg.op(retry_policy=QUICK)
@transient_only
def connects_on_second_try(context: dg.OpExecutionContext) -> int:
    port = _closed_port() if context.retry_number == 0 else None
    if port is not None:
        psycopg.connect(host="127.0.0.1", port=port, connect_timeout=2)  # refused: a transient error
    return context.retry_number


@dg.op(retry_policy=QUICK)
@transient_only
def bad_input() -> None:
    raise ValueError("column 'weight' is not numeric")


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


def test_a_refused_connection_is_retried_and_bad_input_fails_at_once():
    ok = dg.GraphDefinition("ok", node_defs=[connects_on_second_try]).to_job().execute_in_process()
    assert ok.success and _retries(ok) == 1 and ok.output_for_node("connects_on_second_try") == 1
    failed = dg.GraphDefinition("bad", node_defs=[bad_input]).to_job().execute_in_process(raise_on_error=False)
    assert not failed.success and _retries(failed) == 0
    error = failed.get_step_failure_events()[0].step_failure_data.error
    assert "ValueError: column 'weight' is not numeric" in error.message
    assert error.cause is not None and "ValueError" in error.cause.cls_name
