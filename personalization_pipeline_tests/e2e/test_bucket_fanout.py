"""Rankings fanned out over user buckets give exactly the single-process result, in one process,
under Dagster's multiprocess executor and under the Celery executor with a real broker and worker.

The broker is Redis: ``PERSONALIZATION_TEST_CELERY_BROKER`` (default the local server's database
15); where nothing answers there and ``redis-server`` is installed, the test starts its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pandas as pd
import psycopg
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.runner import run_job
from personalization_pipeline.serving.snapshot import per_user_queries, stage_per_user, user_ranges
from personalization_pipeline.steps.buckets import bucket_sql
from personalization_pipeline.synth.generator import generate
from personalization_pipeline_tests.pipeline_support import pipeline_env

BUCKETS = 3
BROKER = os.environ.get("PERSONALIZATION_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/15")


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[str]:
    """A Redis URL that answers: the configured one, else a server started for this module."""
    if _answers(BROKER):
        yield BROKER
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail(f"no Redis answers at {BROKER} and redis-server is not installed: the Celery test needs a broker")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while not _answers(url):
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, reset_pg):
    """A nightly run on generated data; yields (settings, environment)."""
    root = tmp_path_factory.mktemp("fanout")
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    generate(root / "raw", users=300, items=150, seed=11, end=end)
    with pipeline_env(root, reset_pg(), top_n=20) as env:
        result = run_job("nightly")
        assert result.success, result.error
        yield Settings.from_env(), env


def _rankings(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return (
            con.execute("SELECT * FROM user_rankings ORDER BY user_id, scope, rank").df(),
            con.execute("SELECT * FROM rank_rationale ORDER BY user_id, scope, rank").df(),
        )


def _materialize(env: pytest.MonkeyPatch, job: str, asset: str, executor: str, buckets: int) -> dict:
    """``asset`` of ``job`` materialized under ``executor`` over ``buckets`` user buckets; its metadata."""
    env.setenv("PERSONALIZATION_EXECUTOR", executor)
    env.setenv("PERSONALIZATION_USER_BUCKETS", str(buckets))
    result = run_job(job, assets=[asset])
    assert result.success, result.error
    return result.metadata[asset]


def _rank(env: pytest.MonkeyPatch, executor: str, buckets: int) -> dict:
    return _materialize(env, "nightly", "user_rankings", executor, buckets)


def _assert_fanned_out_equal(settings: Settings, single: tuple, fanned: tuple) -> None:
    """(metadata, tables) of one bucket in one process and of ``BUCKETS`` buckets: the same rows."""
    (one, expected), (many, got) = single, fanned
    assert one["buckets"] == 1 and many["buckets"] == BUCKETS
    assert one["dagster/row_count"] == many["dagster/row_count"] == len(expected[0]) > 0
    for want, have in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(have, want, check_exact=True)
    assert not settings.staging_dir.exists() or not any(settings.staging_dir.iterdir())  # nothing left behind


def _serve_ranker(settings: Settings) -> None:
    """Make the re-ranker the clear winner of the latest evaluation, so its path serves."""
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(
            "UPDATE eval_history SET value = 1.0 WHERE model_name = 'ranker' AND metric = 'ndcg' "
            "AND run_id = (SELECT arg_max(run_id, computed_at) FROM eval_history)"
        )


def _assert_same(settings: Settings, expected: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    got = _rankings(settings)
    for want, have in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(have, want, check_exact=True)


def _stored_in_key_order(settings: Settings) -> bool:
    """Whether ``user_rankings`` and ``rank_rationale`` are stored in (user, scope, rank) order: the
    publish's ranges of users skip row groups by it."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return all(
            con.execute(
                f"SELECT count(*) FILTER (WHERE key < before) FROM (SELECT (user_id, scope, rank) AS key, "
                f"lag((user_id, scope, rank)) OVER (ORDER BY rowid) AS before FROM {table})"
            ).fetchone()
            == (0,)
            for table in ("user_rankings", "rank_rationale")
        )


def test_buckets_in_one_process_equal_one_bucket(warehouse):
    settings, env = warehouse
    single = _rank(env, "in_process", 1)
    expected = _rankings(settings)
    assert _stored_in_key_order(settings)  # one bucket's output, loaded as written
    fanned = _rank(env, "in_process", BUCKETS)
    assert _stored_in_key_order(settings)  # three buckets' outputs, sorted on load
    assert single["buckets"] == 1 and fanned["buckets"] == BUCKETS
    assert single["serving_model"] == fanned["serving_model"]
    assert len(expected[0]) == fanned["dagster/row_count"] > 0
    _assert_same(settings, expected)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        sizes = con.execute(
            f"SELECT {bucket_sql('user_id', BUCKETS)} AS b, count(*) FROM mart_user_activity GROUP BY b ORDER BY b"
        ).fetchall()
    assert [b for b, _ in sizes] == list(range(BUCKETS)) and all(n > 0 for _, n in sizes)
    assert not settings.staging_dir.exists() or not any(settings.staging_dir.iterdir())  # nothing left behind


def _similar(env: pytest.MonkeyPatch, executor: str, buckets: int) -> tuple[dict, list[pd.DataFrame]]:
    metadata = _materialize(env, "weekly", "similar_users", executor, buckets)
    with duckdb.connect(str(Settings.from_env().warehouse_path), read_only=True) as con:
        tables = [
            con.execute(
                "SELECT * EXCLUDE (calculated_at) FROM similar_users "
                "ORDER BY user_id, similarity_score DESC, similar_user_id"
            ).df(),
        ]
    return metadata, tables


def test_similar_users_over_buckets_in_parallel_processes_equal_one_bucket(warehouse):
    settings, env = warehouse
    single = _similar(env, "in_process", 1)
    _assert_fanned_out_equal(settings, single, _similar(env, "multiprocess", BUCKETS))
    assert len(single[1][0]) > 0  # neighbours found


def _publish(env: pytest.MonkeyPatch, executor: str, buckets: int) -> tuple[dict, list[pd.DataFrame]]:
    metadata = _materialize(env, "nightly", "serving_tables", executor, buckets)
    with psycopg.connect(Settings.from_env().database_url) as conn:
        served = [
            pd.DataFrame(conn.execute(query).fetchall())
            for query in (
                "SELECT user_id, scope, items::text, model_version, variant FROM personalization_ranks"
                " ORDER BY user_id, scope",
                "SELECT user_id, features::text FROM personalization_features ORDER BY user_id",
                "SELECT user_id, similar_user_id, similarity_score FROM personalization_similar_users"
                " ORDER BY user_id, similar_user_id",
                "SELECT relname FROM pg_class WHERE relname LIKE 'personalization%load%'",
            )
        ]
    return metadata, served


def test_publish_over_buckets_in_parallel_processes_serves_what_one_process_serves(warehouse):
    settings, env = warehouse
    single = _publish(env, "in_process", 1)
    _assert_fanned_out_equal(settings, single, _publish(env, "multiprocess", BUCKETS))
    assert len(single[1][1]) > 0 and single[1][3].empty  # features published, no load table left


@pytest.fixture(scope="module")
def ranker_reference(warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The re-ranker's lists from one process and one bucket."""
    settings, env = warehouse
    _serve_ranker(settings)
    assert _rank(env, "in_process", 1)["serving_model"] == "ranker"
    assert _stored_in_key_order(settings)  # the re-ranker's lists, sorted on load
    expected = _rankings(settings)
    assert len(expected[0]) > 0 and len(expected[1]) == len(expected[0])  # a rationale per served item
    return expected


def test_multiprocess_executor_gives_the_single_process_result(warehouse, ranker_reference):
    settings, env = warehouse
    metadata = _rank(env, "multiprocess", BUCKETS)
    assert metadata["serving_model"] == "ranker" and metadata["buckets"] == BUCKETS
    _assert_same(settings, ranker_reference)


def test_celery_executor_gives_the_single_process_result(warehouse, ranker_reference, broker, tmp_path):
    settings, env = warehouse
    env.setenv("PERSONALIZATION_CELERY_BROKER", broker)
    env.setenv("PERSONALIZATION_CELERY_BACKEND", broker)
    env.setenv("PERSONALIZATION_EXECUTOR", "celery")
    env.setenv("PERSONALIZATION_USER_BUCKETS", str(BUCKETS))
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "personalization_pipeline.cli", "worker", "--concurrency", "2"],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        metadata = _rank(env, "celery", BUCKETS)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    executed = Path(log.name).read_text()
    assert "rank_user_bucket" in executed  # the steps ran in the worker, not here
    assert metadata["serving_model"] == "ranker" and metadata["buckets"] == BUCKETS
    _assert_same(settings, ranker_reference)


def test_re_ranking_over_its_cost_budget_is_skipped_until_buckets_share_it(warehouse, ranker_reference):
    settings, env = warehouse
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        users = con.execute("SELECT count(*) FROM mart_user_activity").fetchone()[0]
        scopes = con.execute("SELECT count(DISTINCT scope) FROM stg_items").fetchone()[0]
    per_bucket = -(-users // BUCKETS) * scopes * settings.ranker_candidates
    env.setenv("PERSONALIZATION_RANKER_MAX_ROWS", str(per_bucket))  # fits BUCKETS buckets, not one
    try:
        alone = _rank(env, "in_process", 1)
        assert alone["serving_model"] in ("als", "ease")  # the best personal model serves instead
        assert (
            f"{users * scopes * settings.ranker_candidates:,} candidate rows per bucket"
            in alone["ranker_skipped_because"]
        )
        shared = _rank(env, "in_process", BUCKETS)
        assert shared["serving_model"] == "ranker" and "ranker_skipped_because" not in shared
        _assert_same(settings, ranker_reference)

        env.setenv("PERSONALIZATION_USER_BUCKETS", "1")
        trained = run_job("nightly", assets=["ranker_model"])
        assert trained.success, trained.error
        meta = trained.metadata["ranker_model"]  # not reused: serving it would be over the budget
        assert meta["status"] == "skipped" and "PERSONALIZATION_RANKER_MAX_ROWS" in meta["skipped_because"]
    finally:
        env.delenv("PERSONALIZATION_RANKER_MAX_ROWS")


def test_staging_a_slice_of_users_at_a_time_stages_the_same_rows(warehouse, tmp_path):
    settings, _ = warehouse
    now = datetime.now(UTC).replace(tzinfo=None)
    for run in ("whole", "sliced"):
        (tmp_path / run).mkdir()
    ttl = timedelta(hours=24)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        queries = per_user_queries(con, now, ttl)
        rows = con.execute("SELECT count(*) FROM user_rankings").fetchone()[0]
        whole = stage_per_user(con, now, ttl, tmp_path / "whole", BUCKETS)
        sliced = stage_per_user(con, now, ttl, tmp_path / "sliced", BUCKETS, slice_rows=rows // 4)
        users = user_ranges(con, rows // 4)[1]
        lines = con.execute(f"EXPLAIN {per_user_queries(con, now, ttl, users)['ranks'].sql}", [now, now])
        lines = lines.fetchall()[0][1].splitlines()
    assert whole == sliced and whole[0] == tuple(queries) and len(whole[1]) == BUCKETS
    # a slice is chosen in the table's scan, before the lists are aggregated (DuckDB keeps a query's
    # lists in memory), so that the scan skips the row groups outside it
    aggregate = next(i for i, line in enumerate(lines) if "Group By" in line)
    scan = next(i for i, line in enumerate(lines) if "Seq Scan" in line)
    assert aggregate < scan < next(i for i, line in enumerate(lines) if "user_id >=" in line)
    for name, expected in (("ranks", {f"slice{i}" for i in range(-(-rows // (rows // 4)))}), ("features", {"whole"})):
        staged = {p.name.split("_")[0] for p in (tmp_path / "sliced" / name).rglob("*.parquet")}
        assert staged == expected  # 4 or 5 slices of users for the lists, the rest staged once
    for name in queries:
        staged = {run: sorted(p.name for p in (tmp_path / run / name).glob("bucket=*")) for run in ("whole", "sliced")}
        assert staged["whole"] == staged["sliced"]
        for bucket in staged["whole"]:
            frames = [
                pd.read_parquet(tmp_path / run / name / bucket).sort_values(["user_id", *KEYS[name]])
                for run in ("whole", "sliced")
            ]
            pd.testing.assert_frame_equal(*(f.reset_index(drop=True) for f in frames))


KEYS = {"ranks": ["scope"], "rationale": ["scope"], "features": [], "similar_users": ["similar_user_id"]}
