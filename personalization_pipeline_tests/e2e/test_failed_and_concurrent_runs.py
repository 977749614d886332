"""Runs that fail, and runs that overlap: the warehouse and the serving tables stay whole.

A failed run, wherever it fails (a bad file at ingest, a model that cannot train after dbt
rebuilt the marts), leaves every warehouse table and every served row exactly as they were.
Two runs on one warehouse never interleave: the second waits for the first or refuses at once,
and what is served afterwards is one run's complete, self-consistent publish.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.runner import run_job
from personalization_pipeline.steps.registry import latest_trained
from personalization_pipeline.synth.generator import generate
from personalization_pipeline.warehouse_run import APPLICATION_NAME_PREFIX, begin
from personalization_pipeline_tests.pipeline_support import (
    pipeline_env,
    serving_checksums,
    warehouse_checksums,
)

CONSENT_STORE = ("personalization_settings",)  # the file seeds consent at ingest, by design


def _state(settings: Settings) -> tuple[dict, dict]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        warehouse = warehouse_checksums(con)
    return warehouse, serving_checksums(settings.database_url, exclude=CONSENT_STORE)


@pytest.fixture(scope="module")
def published(tmp_path_factory, reset_pg):
    """One good nightly run on generated data: (settings, environment, state after it)."""
    root = tmp_path_factory.mktemp("failures")
    generate(root / "raw", users=120, items=50, seed=11)
    with pipeline_env(root, reset_pg(), top_n=10) as env:
        settings = Settings.from_env()
        result = run_job("nightly")
        assert result.success, result.error
        yield settings, env, _state(settings)


def _header_only(raw: Path) -> None:
    (raw / "interactions.csv").write_text("user_id,item_id,occurred_at,event_type,value,session_id,device_type\n")


def _all_expired(raw: Path) -> None:
    frame = pd.read_csv(raw / "interactions.csv", dtype=str)
    frame["occurred_at"] = "2015-03-01T10:00:00Z"
    frame.to_csv(raw / "interactions.csv", index=False)


def _latin1(raw: Path) -> None:
    text = (raw / "interactions.csv").read_text()
    (raw / "interactions.csv").write_bytes(text.replace("mobile", "téléphone", 1).encode("latin-1"))


def _only_dismissals(raw: Path) -> None:
    frame = pd.read_csv(raw / "interactions.csv", dtype=str)
    frame["event_type"] = "dismiss"
    frame.to_csv(raw / "interactions.csv", index=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_header_only, "no data rows"),
        (_all_expired, "older than the raw-event retention of 730 days (newest event 2015-03-01)"),
        (_latin1, "not valid utf-8 at byte"),
        (_only_dismissals, "no positive interactions"),  # fails after dbt rebuilt every mart
    ],
    ids=["header-only", "all-expired", "latin-1", "only-dismissals"],
)
def test_a_failed_run_leaves_the_warehouse_and_the_served_rows_as_they_were(
    published, tmp_path, damage: Callable[[Path], None], message: str
):
    settings, env, before = published
    raw = tmp_path / "raw"
    shutil.copytree(settings.data_dir, raw)
    damage(raw)
    env.setenv("PERSONALIZATION_DATA_DIR", str(raw))
    try:
        result = run_job("nightly")
    finally:
        env.delenv("PERSONALIZATION_DATA_DIR")
    assert not result.success and message in (result.error or ""), result.error
    assert _state(settings) == before
    assert not list(settings.warehouse_path.parent.glob(".*.work*"))  # the run's private copy is gone


def test_cleanup_does_not_touch_postgresql_while_another_run_holds_the_warehouse(published):
    settings, env, _ = published
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("UPDATE personalization_ranks SET valid_until = now() - interval '1 hour'")
    expired = serving_checksums(settings.database_url, exclude=CONSENT_STORE)
    holder = begin(settings.warehouse_path, settings.database_url, "nightly-holding-run", 0)
    env.setenv("PERSONALIZATION_RUN_LOCK_TIMEOUT_SECONDS", "0")
    try:
        result = run_job("cleanup")
    finally:
        env.delenv("PERSONALIZATION_RUN_LOCK_TIMEOUT_SECONDS")
        holder.finish(promote=False)
    assert not result.success
    assert "in use by run nightly-holding-run" in (result.error or "") and "changed nothing" in result.error
    assert serving_checksums(settings.database_url, exclude=CONSENT_STORE) == expired  # nothing purged


def _start_run(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "personalization_pipeline.cli", "run", "--no-sample"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for_lock_holder(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            held = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s",
                (APPLICATION_NAME_PREFIX + "%",),
            ).fetchone()[0]
            if held:
                return
            time.sleep(0.2)
    raise AssertionError("the first run never took the warehouse")


def _served_matches(settings: Settings, raw: Path) -> None:
    """The publish is one run's, complete: every served user is in that run's data, every opted-in user of
    that data with history is served, and the served model version is the one that run trained,
    registered and published as active."""
    users = set(pd.read_csv(raw / "interactions.csv", dtype=str)["user_id"])
    with psycopg.connect(settings.database_url) as conn:
        served = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM personalization_ranks")}
        versions = {r[0] for r in conn.execute("SELECT DISTINCT model_version FROM personalization_ranks")}
        active = {r[0] for r in conn.execute("SELECT model_version FROM personalization_models WHERE active")}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        ranked = {r[0] for r in con.execute("SELECT DISTINCT user_id FROM user_rankings").fetchall()}
        trained = {entry.model_version for entry in latest_trained(con).values()}
        loaded = con.execute("SELECT count(*) FROM raw_interactions").fetchone()[0]
    assert served and served <= users and served == ranked
    assert len(versions) == 1 and versions <= active == trained
    assert loaded == len(pd.read_csv(raw / "interactions.csv")) - _quarantined(settings)


def _quarantined(settings: Settings) -> int:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT count(*) FROM quarantine WHERE table_name = 'interactions' "
            "AND batch_id = (SELECT max(batch_id) FROM quarantine)"
        ).fetchone()[0]


@pytest.mark.parametrize("wait_seconds", [0, 600], ids=["second-refuses", "second-waits"])
def test_two_runs_at_once_never_interleave(tmp_path, reset_pg, wait_seconds: int):
    data = {name: tmp_path / name for name in ("a", "b")}
    generate(data["a"], users=90, items=40, seed=1)
    generate(data["b"], users=60, items=30, seed=2)
    url = reset_pg()
    # run b's data is another catalogue: its figures are not comparable, so the gate is opened
    with pipeline_env(tmp_path, url, run_lock_timeout_seconds=wait_seconds, top_n=5, regression_tolerance=1):
        settings = Settings.from_env()
        env = {name: dict(os.environ, PERSONALIZATION_DATA_DIR=str(path)) for name, path in data.items()}
    first = _start_run(env["a"], tmp_path / "a.log")
    _wait_for_lock_holder(url)
    second = _start_run(env["b"], tmp_path / "b.log")
    codes = {"a": first.wait(timeout=600), "b": second.wait(timeout=600)}
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in data}
    assert codes["a"] == 0, logs["a"]
    if wait_seconds == 0:
        said = " ".join(logs["b"].split())  # the console wraps long lines
        assert codes["b"] == 1 and "is in use by run" in said and "changed nothing" in said, logs["b"]
        _served_matches(settings, data["a"])
    else:
        assert codes["b"] == 0, logs["b"]
        _served_matches(settings, data["b"])  # it ran after the first one, on its own data
    # both runs are in the instance the command defaults to, where the UI started on it lists them
    with pytest.MonkeyPatch.context() as home:
        home.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(dg.RunsFilter(job_name="nightly"))
    expected = ["FAILURE", "SUCCESS"] if wait_seconds == 0 else ["SUCCESS", "SUCCESS"]
    assert sorted(run.status.value for run in runs) == expected
    assert all(run.remote_job_origin is not None for run in runs)


def test_the_regression_gate_passes_the_first_run_and_blocks_a_worse_model(published):
    settings, env, _ = published
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        first = con.execute("SELECT count(*) FROM eval_history").fetchone()[0]
    assert first > 0  # the fixture's first run was published: the gate passed with nothing serving
    before = serving_checksums(settings.database_url, exclude=CONSENT_STORE)
    # a misconfiguration: dismissals as signal (ALS, popularity), EASE left to the unregularised order of
    # events, and the re-ranker (which makes the best of poor sources) given only 5 candidates per user
    inverted = {"view": -1, "click": -1, "time_spent": -1, "rate": -1, "accept": -1, "complete": -1, "dismiss": 4}
    bad = {
        "PERSONALIZATION_EVENT_WEIGHTS": json.dumps(inverted),
        "PERSONALIZATION_EASE_SEQUENCE_WEIGHT": "1e6",
        "PERSONALIZATION_EASE_SEQUENCE_REGULARIZATION": "1e-3",
        "PERSONALIZATION_RANKER_CANDIDATES": "5",
    }
    for name, value in bad.items():
        env.setenv(name, value)
    try:
        result = run_job("nightly")
    finally:
        for name in bad:
            env.delenv(name)
    assert not result.success and result.checks["user_rankings.regression_gate"] is False
    assert "worse than the tolerance" in (result.error or "") and "floor" in result.error
    assert serving_checksums(settings.database_url, exclude=CONSENT_STORE) == before  # the old rankings keep serving
