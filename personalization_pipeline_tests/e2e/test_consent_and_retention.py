"""Consent and retention through whole runs: opt-out completeness, live opt-out, cleanup job."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.config import Settings
from personalization_pipeline.definitions import build_definitions
from personalization_pipeline.privacy.report import privacy_report
from personalization_pipeline.recsys.als import ALS
from personalization_pipeline.runner import run_job
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.steps.registry import latest_trained
from personalization_pipeline.synth.generator import generate
from personalization_pipeline_tests.pipeline_support import pipeline_env, served_ranks, served_strings


def _run() -> dict:
    result = run_job("nightly")
    assert result.success, result.error
    return result.metadata


def _warehouse(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).df()


def _latest_als(settings: Settings) -> ALS:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return ALS.load(latest_trained(con)["als"].path)


@pytest.fixture(scope="module")
def world(tmp_path_factory, reset_pg):
    """A generated data set (with opted-out users in its settings file), published once into an
    empty serving database: (settings, environment, the first run's metadata)."""
    root = tmp_path_factory.mktemp("consent")
    generate(root / "raw", users=300, items=120, seed=5)
    with pipeline_env(root, reset_pg(), top_n=10) as env:
        yield Settings.from_env(), env, _run()


def test_opted_out_user_is_removed_as_if_they_never_existed(world, tmp_path):
    settings, env, first = world
    file_settings = pd.read_csv(settings.data_dir / "settings.csv", dtype=str)
    opted_out = file_settings.loc[file_settings["personalization_enabled"].str.lower() == "false", "user_id"]
    interactions = pd.read_csv(settings.data_dir / "interactions.csv", dtype=str)
    target = next(u for u in opted_out if (interactions["user_id"] == u).sum() >= 5)

    assert first["raw_settings"]["seeded_into_serving_database"] == len(file_settings)
    meta = _run()
    assert meta["raw_settings"]["seeded_into_serving_database"] == 0
    with psycopg.connect(settings.database_url) as conn:
        stored_out = {
            r[0]
            for r in conn.execute(
                "SELECT user_id FROM personalization_settings WHERE NOT personalization_enabled"
            ).fetchall()
        }
    assert stored_out == set(opted_out)  # the file seeded the source of truth
    with_them = _latest_als(settings)
    rankings_with = _warehouse(settings, "SELECT * FROM user_rankings ORDER BY user_id, scope, rank")
    report = meta["privacy_report"]
    assert report["opted_out_users"] == len(opted_out)
    assert report["opted_out_events_excluded"] >= (interactions["user_id"] == target).sum()

    erased = tmp_path / "raw"
    erased.mkdir()
    for name in ("users", "items", "settings", "interactions"):
        frame = pd.read_csv(settings.data_dir / f"{name}.csv", dtype=str, keep_default_na=False)
        if "user_id" in frame.columns:
            frame = frame[frame["user_id"] != target]
        frame.to_csv(erased / f"{name}.csv", index=False)
    env.setenv("PERSONALIZATION_DATA_DIR", str(erased))
    try:
        _run()
    finally:
        env.delenv("PERSONALIZATION_DATA_DIR")
    without_them = _latest_als(settings)
    rankings_without = _warehouse(settings, "SELECT * FROM user_rankings ORDER BY user_id, scope, rank")

    assert target not in set(with_them.users.ids)
    np.testing.assert_array_equal(with_them.users.ids, without_them.users.ids)
    np.testing.assert_array_equal(with_them.items.ids, without_them.items.ids)
    np.testing.assert_array_equal(with_them.user_factors, without_them.user_factors)
    np.testing.assert_array_equal(with_them.item_factors, without_them.item_factors)
    pd.testing.assert_frame_equal(rankings_with, rankings_without)
    with psycopg.connect(settings.database_url) as conn:
        for table in ("personalization_ranks", "personalization_features"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
    # every text and JSON value of every serving table but the consent records themselves
    assert not served_strings(settings.database_url, exclude=("personalization_settings",)) & set(opted_out)


def test_live_opt_out_then_opt_in_after_the_next_run(world):
    settings, *_ = world
    user, scope = served_ranks(settings).iloc[0][["user_id", "scope"]]
    headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, user)}"}
    with TestClient(create_app(settings.database_url, settings)) as client:
        assert client.get(f"/v1/rankings/{scope}", headers=headers).json()["personalized"] is True
        put = client.put("/v1/settings", headers=headers, json={"personalization_enabled": False})
        assert put.status_code == 200, put.text
        read = client.get(f"/v1/rankings/{scope}", headers=headers).json()  # no pipeline run in between
        assert read["personalized"] is False

    _run()  # the run reads consent from the serving database
    assert user not in set(served_ranks(settings)["user_id"])
    assert user not in set(_latest_als(settings).users.ids)  # their events left the training data
    assert _warehouse(settings, f"SELECT count(*) AS n FROM user_features WHERE user_id = '{user}'")["n"][0] == 0

    with TestClient(create_app(settings.database_url, settings)) as client:
        put = client.put("/v1/settings", headers=headers, json={"personalization_enabled": True})
        assert put.status_code == 200, put.text
    meta = _run()
    assert meta["raw_settings"]["seeded_into_serving_database"] == 0  # the file never overwrites the database
    assert user in set(served_ranks(settings)["user_id"])


def test_cleanup_job_deletes_expired_and_aged_rows_and_reports_counts(world):
    settings, *_ = world
    expired_users = list(served_ranks(settings)["user_id"].drop_duplicates()[:3])
    with psycopg.connect(settings.database_url) as conn:
        expired_rows = conn.execute(
            "UPDATE personalization_ranks SET valid_until = now() - interval '1 minute' WHERE user_id = ANY(%s)",
            (expired_users,),
        ).rowcount
        conn.execute(
            "UPDATE personalization_features SET computed_at = now() - interval '31 days' WHERE user_id = %s",
            (expired_users[0],),
        )
    user, scope = expired_users[0], served_ranks(settings).query("user_id == @expired_users[0]")["scope"].iloc[0]
    headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, user)}"}
    with TestClient(create_app(settings.database_url, settings)) as client:
        assert client.get(f"/v1/rankings/{scope}", headers=headers).json()["personalized"] is False

    with duckdb.connect(str(settings.warehouse_path)) as con:
        old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=45)
        con.execute("INSERT INTO quarantine VALUES ('old', 'interactions', NULL, 'null_user_id', '{}', ?)", [old])

    result = run_job("cleanup")
    assert result.success, result.error
    counts = result.metadata["retention_cleanup"]
    assert counts["serving.ranks"] == expired_rows
    assert counts["serving.features"] == 1
    assert counts["warehouse.quarantine"] == 1
    with psycopg.connect(settings.database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM personalization_ranks WHERE user_id = ANY(%s)", (expired_users,)
        ).fetchone()[0]
    assert left == 0
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert privacy_report(con)["deleted_by_last_retention_cleanup"]["serving.ranks"] == expired_rows


def test_an_opt_out_made_during_the_run_is_not_published(world):
    """The user opts out after rankings are computed and before the publish: the publish drops them."""
    settings, *_ = world
    defs = build_definitions()
    job = defs.resolve_job_def("nightly")
    late = dg.AssetSelection.assets("serving_tables", "privacy_report")
    computed = (dg.AssetSelection.all() - late).resolve(defs.resolve_asset_graph())
    assert job.execute_in_process(asset_selection=list(computed), raise_on_error=False).success
    user = served_ranks(settings)["user_id"].iloc[-1]
    assert not _warehouse(settings, f"SELECT 1 FROM user_rankings WHERE user_id = '{user}'").empty  # computed
    headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, user)}"}
    with TestClient(create_app(settings.database_url, settings)) as client:
        put = client.put("/v1/settings", headers=headers, json={"personalization_enabled": False})
        assert put.status_code == 200, put.text

    publish = job.execute_in_process(asset_selection=[dg.AssetKey("serving_tables")], raise_on_error=False)
    assert publish.success
    meta = publish.asset_materializations_for_node("serving_tables")[0].metadata
    assert meta["dropped_at_commit_opted_out"].value >= 2  # at least their ranking and feature rows
    assert user not in set(served_ranks(settings)["user_id"])
    with psycopg.connect(settings.database_url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM personalization_features WHERE user_id = %s", (user,)).fetchone()[0] == 0
        )


def test_id_types_cannot_bypass_consent(tmp_path, reset_pg):
    """Interactions in Parquet with float user ids, users with integer ids, settings as text: one user
    each, so every opt-out holds; a token naming the user as '52.0' is the same user."""
    source = tmp_path / "generated"
    generate(source, users=150, items=60, seed=8)
    users = pd.read_csv(source / "users.csv", dtype=str, keep_default_na=False)
    number = {u: i + 1 for i, u in enumerate(sorted(users["user_id"]))}
    raw = tmp_path / "raw"
    raw.mkdir()
    interactions = pd.read_csv(source / "interactions.csv", dtype=str, keep_default_na=False)
    interactions["user_id"] = interactions["user_id"].map(number).astype("float64")
    interactions.to_parquet(raw / "interactions.parquet")
    users["user_id"] = users["user_id"].map(number).astype("int64")
    users.to_parquet(raw / "users.parquet")
    settings_file = pd.read_csv(source / "settings.csv", dtype=str, keep_default_na=False)
    settings_file["user_id"] = settings_file["user_id"].map(number).astype(str)
    settings_file.to_csv(raw / "settings.csv", index=False)
    shutil.copy(source / "items.csv", raw / "items.csv")
    opted_out = set(settings_file.loc[settings_file["personalization_enabled"].str.lower() == "false", "user_id"])
    assert opted_out

    with pipeline_env(tmp_path, reset_pg(), top_n=10):
        settings = Settings.from_env()
        _run()
        served = served_ranks(settings)
        assert served["user_id"].str.fullmatch(r"\d+").all()  # no '52.0' anywhere
        assert not set(served["user_id"]) & opted_out
        assert not served_strings(settings.database_url, exclude=("personalization_settings",)) & opted_out
        assert not set(_warehouse(settings, "SELECT user_id FROM user_features")["user_id"]) & opted_out
        out_user, in_user = sorted(opted_out)[0], served["user_id"].iloc[0]
        with TestClient(create_app(settings.database_url, settings)) as client:
            for sub, personalized in ((f"{out_user}.0", False), (f" {in_user}.0\t", True)):
                headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, sub)}"}
                body = client.get(f"/v1/rankings/{served['scope'].iloc[0]}", headers=headers).json()
                assert body["personalized"] is personalized, sub
