"""An A/B experiment through whole nightly runs: defined from the command line, assigned, served
per variant, simulated responses with a planted lift, analysed, read by an admin, ended."""

from __future__ import annotations

import json

import duckdb
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.cli import main
from personalization_pipeline.config import Settings
from personalization_pipeline.runner import run_job
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.synth.generator import generate
from personalization_pipeline_tests.conftest import API_SETTINGS
from personalization_pipeline_tests.pipeline_support import pipeline_env

NAME = "pop-vs-default"
SPEC = {
    "name": NAME,
    "hypothesis": "popular lists are accepted more",
    "variants": [
        {"name": "control", "ranking": "default", "traffic": 50},
        {"name": "popular", "ranking": "popularity", "traffic": 50},
    ],
    "min_sample_size": 50,
}


def _run() -> dict:
    result = run_job("nightly")
    assert result.success, result.error
    return result.metadata


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def world(tmp_path_factory, reset_pg):
    """Generated data and an experiment created from the command line, then one nightly run."""
    root = tmp_path_factory.mktemp("experiment")
    generate(root / "raw", users=300, items=120, seed=9)
    spec = root / "experiment.json"
    spec.write_text(json.dumps(SPEC))
    with pipeline_env(root, reset_pg(), top_n=10):
        settings = Settings.from_env()
        assert main(["experiment", "create", str(spec)]) == 0
        assert main(["experiment", "create", str(spec)]) == 1  # the name is taken
        yield settings, _run()


def test_every_active_user_is_assigned_and_served_the_variant(world):
    settings, meta = world
    url = str(settings.database_url)
    assignments = dict(_rows(url, "SELECT user_id, variant FROM personalization_experiment_assignments"))
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        active = {u for (u,) in con.execute("SELECT user_id FROM mart_user_activity").fetchall()}
    assert set(assignments) == active  # 100% of the traffic: everyone with history, once
    shares = {v: list(assignments.values()).count(v) / len(assignments) for v in ("control", "popular")}
    assert shares == pytest.approx({"control": 0.5, "popular": 0.5}, abs=0.1)
    opted_out = {
        u for (u,) in _rows(url, "SELECT user_id FROM personalization_settings WHERE NOT personalization_enabled")
    }
    assert opted_out and not opted_out & set(assignments)  # opted-out users are never assigned
    served = _rows(url, "SELECT user_id, experiment, variant, model_version FROM personalization_ranks")
    assert {(u, e, v) for u, e, v, _ in served} == {(u, NAME, v) for u, v in assignments.items()}
    versions = {v: {m.split("-")[0] for _, _, variant, m in served if variant == v} for v in ("control", "popular")}
    assert versions["popular"] == {"popularity"} and "popularity" not in versions["control"]
    exposures = _rows(url, "SELECT user_id, variant, publishes FROM personalization_experiment_exposures")
    assert {(u, v) for u, v, _ in exposures} == set(assignments.items()) and {p for *_, p in exposures} == {1}
    assert meta["experiment_assignments"]["users_per_variant"] == {
        v: list(assignments.values()).count(v) for v in ("control", "popular")
    }
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        ranked = con.execute(
            "SELECT experiment || '/' || variant, count(DISTINCT user_id) FROM user_rankings GROUP BY 1"
        ).fetchall()
    assert meta["user_rankings"]["users_per_experiment_variant"] == dict(sorted(ranked))  # counted by the buckets
    assert meta["user_rankings"]["users"] == sum(n for _, n in ranked) == len(active)


def test_the_endpoint_says_which_variant_it_serves(world, bearer):
    settings, _ = world
    url = str(settings.database_url)
    user, variant = _rows(url, "SELECT user_id, variant FROM personalization_experiment_assignments LIMIT 1")[0]
    scope = _rows(url, f"SELECT scope FROM personalization_ranks WHERE user_id = '{user}' LIMIT 1")[0][0]
    with TestClient(create_app(url, API_SETTINGS)) as client:
        body = client.get(f"/v1/rankings/{scope}", headers=bearer(user)).json()
        assert (body["personalized"], body["experiment"], body["variant"]) == (True, NAME, variant)
        newcomer = client.get(f"/v1/rankings/{scope}", headers=bearer("never-seen")).json()
        assert (newcomer["personalized"], newcomer["experiment"], newcomer["variant"]) == (False, None, None)


def test_a_planted_lift_is_found_and_ending_takes_effect_at_the_next_publish(world, bearer):
    settings, _ = world
    url = str(settings.database_url)
    assert main(["simulate-responses", NAME, "--lift", "popular=3", "--seed", "3"]) == 0
    meta = _run()
    assert meta["experiment_results"]["winners"] == {NAME: "popular"}
    results = {
        r[0]: r[1:]
        for r in _rows(url, "SELECT variant, verdict, lift, p_value FROM personalization_experiment_results")
    }
    assert results["control"][0] == "control"
    verdict, lift, p_value = results["popular"]
    assert verdict == "roll_out" and lift > 0.5 and p_value < 0.05
    with TestClient(create_app(url, API_SETTINGS)) as client:
        read = client.get(f"/v1/admin/experiments/{NAME}/results", headers=bearer("ops", "admin")).json()
        assert read["winner"] == "popular" and [v["variant"] for v in read["variants"]] == ["control", "popular"]
    publishes = {p for (p,) in _rows(url, "SELECT publishes FROM personalization_experiment_exposures")}
    assert publishes == {2}

    assert main(["experiment", "end", NAME]) == 0
    _run()
    assert _rows(url, "SELECT count(*) FROM personalization_ranks WHERE experiment IS NOT NULL") == [(0,)]
    assert _rows(url, "SELECT count(*) FROM personalization_ranks")[0][0] > 0  # everyone back on the default
    kept = _rows(url, "SELECT count(*), max(publishes) FROM personalization_experiment_exposures")
    assert kept[0][0] > 0 and kept[0][1] == 2  # the history stays; nobody was exposed after the end
