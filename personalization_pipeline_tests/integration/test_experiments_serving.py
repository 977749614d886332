"""Experiments in the serving database: admin routes (roles, hostile bodies), recorded
assignments, exposure history at publish, opted-out users forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.experiments import store
from personalization_pipeline.experiments.definition import ExperimentSpec
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot
from personalization_pipeline_tests.conftest import API_SETTINGS

SPEC = {
    "name": "rerank-vs-als",
    "description": "re-ranked lists against ALS",
    "variants": [
        {"name": "control", "ranking": "als", "traffic": 50},
        {"name": "reranked", "ranking": "reranked", "traffic": 50},
    ],
    "min_sample_size": 100,
}


@pytest.fixture
def client(clean_pg: str):
    with TestClient(create_app(clean_pg, API_SETTINGS)) as client:
        yield client


def test_admins_create_read_and_end_experiments(client, bearer):
    admin = bearer("ops", "admin")
    created = client.post("/v1/admin/experiments", json=SPEC, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["active"], body["ended_at"]) == ("rerank-vs-als", True, None)
    assert "salt" not in body  # the assignment salt never leaves the database
    assert [v["traffic"] for v in body["variants"]] == [50, 50]
    assert client.get("/v1/admin/experiments/rerank-vs-als", headers=admin).json()["name"] == "rerank-vs-als"
    assert [e["name"] for e in client.get("/v1/admin/experiments", headers=bearer("root", "superadmin")).json()] == [
        "rerank-vs-als"
    ]
    taken = client.post("/v1/admin/experiments", json=SPEC, headers=admin)
    assert taken.status_code == 409 and "exists" in taken.json()["detail"]
    second = client.post("/v1/admin/experiments", json={**SPEC, "name": "other"}, headers=admin)
    assert second.status_code == 409 and "another experiment is active" in second.json()["detail"]
    ended = client.post("/v1/admin/experiments/rerank-vs-als/end", headers=admin)
    assert ended.status_code == 200 and ended.json()["active"] is False and ended.json()["ended_at"]
    assert client.post("/v1/admin/experiments/rerank-vs-als/end", headers=admin).status_code == 409
    assert client.post("/v1/admin/experiments/nope/end", headers=admin).status_code == 404
    assert client.post("/v1/admin/experiments", json={**SPEC, "name": "other"}, headers=admin).status_code == 201
    results = client.get("/v1/admin/experiments/rerank-vs-als/results", headers=admin)
    assert results.json() == {"experiment": "rerank-vs-als", "winner": None, "variants": []}  # not analysed yet
    assert client.get("/v1/admin/experiments/nope/results", headers=admin).status_code == 404


@pytest.mark.parametrize("role", ["client", "reader", "monitor"])
def test_only_admins_reach_experiments(client, bearer, role):
    headers = bearer("u1", role)
    for method, path in [
        ("post", "/v1/admin/experiments"),
        ("get", "/v1/admin/experiments"),
        ("get", "/v1/admin/experiments/rerank-vs-als"),
        ("post", "/v1/admin/experiments/rerank-vs-als/end"),
        ("get", "/v1/admin/experiments/rerank-vs-als/results"),
    ]:
        response = client.request(method, path, json=SPEC if method == "post" else None, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
    assert client.get("/v1/admin/experiments").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {**SPEC, "variants": [{**SPEC["variants"][0], "traffic": 60}, SPEC["variants"][1]]},
        {**SPEC, "admin": True},
        {**SPEC, "name": "a" * 10_000},
        {**SPEC, "name": "x'); DROP TABLE personalization_experiments; --"},
        {**SPEC, "variants": "control"},
        {**SPEC, "variants": [None, None]},
        {**SPEC, "min_sample_size": 1e300},
        {**SPEC, "min_lift": "NaN"},
        {**SPEC, "starts_at": "yesterday"},
        {**SPEC, "description": "d" * 5000},
        [SPEC],
        "not json",
        None,
    ],
)
def test_hostile_bodies_get_4xx_never_500(client, bearer, body):
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    response = client.post("/v1/admin/experiments", headers=bearer("ops", "admin"), **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in {"validation_error", "bad_request"}
    assert client.get("/v1/admin/experiments", headers=bearer("ops", "admin")).json() == []


def test_hostile_paths_get_4xx(client, bearer):
    admin = bearer("ops", "admin")
    for name in ["A" * 64, "..%2F..", "x%00y", "%27%20OR%201%3D1"]:
        assert 400 <= client.get(f"/v1/admin/experiments/{name}", headers=admin).status_code < 500


def _published_ranks(users: list[str], experiment: str | None, now: datetime) -> Snapshot:
    stamps = {"model_version": "als-v1", "generated_at": now, "valid_until": now + timedelta(hours=24)}
    ranks = pd.DataFrame(
        [
            {"user_id": u, "scope": s, "items": [{"id": "i1", "score": 1.0, "confidence": 1.0}], **stamps}
            | ({"experiment": experiment, "variant": "control" if i % 2 else "reranked"} if experiment else {})
            for i, u in enumerate(users)
            for s in ("news", "sports")
        ]
    )
    glob = pd.DataFrame([{"scope": "news", "items": [], **stamps}])
    return Snapshot(ranks=ranks, global_ranks=glob)


def test_assignments_are_recorded_once_and_never_for_opted_out_users(clean_pg):
    experiment = store.create(clean_pg, ExperimentSpec.model_validate(SPEC), seed=42)
    with psycopg.connect(clean_pg) as conn:
        conn.execute("INSERT INTO personalization_settings (user_id, personalization_enabled) VALUES ('out', false)")
    first = pd.DataFrame({"user_id": ["a", "b", "out"], "variant": ["control", "reranked", "control"]})
    recorded = store.record_assignments(clean_pg, experiment.name, first)
    assert recorded.values.tolist() == [["a", "control"], ["b", "reranked"]]
    flipped = pd.DataFrame({"user_id": ["a", "b", "c"], "variant": ["reranked", "control", "reranked"]})
    again = store.record_assignments(clean_pg, experiment.name, flipped)
    assert again.values.tolist() == [["a", "control"], ["b", "reranked"], ["c", "reranked"]]  # first one kept
    with psycopg.connect(clean_pg) as conn:
        stored = conn.execute("SELECT user_id FROM personalization_experiment_assignments ORDER BY 1").fetchall()
    assert stored == [("a",), ("b",), ("c",)]


def test_publish_records_exposures_and_forgets_opted_out_users(clean_pg):
    experiment = store.create(clean_pg, ExperimentSpec.model_validate(SPEC), seed=42)
    store.record_assignments(
        clean_pg, experiment.name, pd.DataFrame({"user_id": ["a", "b", "c"], "variant": ["reranked", "control", "x"]})
    )
    first, second = datetime(2026, 12, 1, 2, tzinfo=UTC), datetime(2026, 12, 2, 2, tzinfo=UTC)
    publish_snapshot(clean_pg, _published_ranks(["a", "b", "c"], experiment.name, first))
    publish_snapshot(clean_pg, _published_ranks(["a", "b"], experiment.name, second))
    publish_snapshot(clean_pg, _published_ranks(["a", "b", "c"], None, second + timedelta(days=1)))  # ended
    exposures = store.read_exposures(clean_pg).set_index("user_id")
    assert exposures.loc["a", ["variant", "publishes"]].tolist() == ["reranked", 2]
    assert exposures.loc["a", "first_served_at"] == first and exposures.loc["a", "last_served_at"] == second
    assert exposures.loc["c", ["publishes"]].tolist() == [1] and exposures.loc["c", "last_served_at"] == first
    with psycopg.connect(clean_pg) as conn:
        conn.execute("INSERT INTO personalization_settings (user_id, personalization_enabled) VALUES ('a', false)")
    publish_snapshot(clean_pg, _published_ranks(["b"], None, second + timedelta(days=2)))
    assert "a" not in set(store.read_exposures(clean_pg)["user_id"])
    with psycopg.connect(clean_pg) as conn:
        kept = conn.execute("SELECT user_id FROM personalization_experiment_assignments ORDER BY 1").fetchall()
        exposed = conn.execute("SELECT user_id FROM personalization_experiment_exposures ORDER BY 1").fetchall()
    assert kept == [("b",), ("c",)] and exposed == [("b",), ("c",)]  # the opted-out user's history is deleted
