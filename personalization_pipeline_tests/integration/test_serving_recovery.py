"""The endpoint recovers on its own when PostgreSQL restarts under it (its own embedded server)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from personalization_pipeline.runner import serving_in_background
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.serving.database import start_embedded_server, stop_embedded_server
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot
from personalization_pipeline_tests.integration.test_serving_api import SETTINGS

USERS = [f"u{i}" for i in range(8)]


def _status(url: str, user: str) -> int:
    token = mint_token(SETTINGS.jwt_secret, user)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
            assert body["personalized"] is True and body["items"][0]["id"] == f"{user}-0"
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def embedded(tmp_path):
    pg_dir = tmp_path / "pg"
    url = start_embedded_server(pg_dir)
    try:
        yield pg_dir, url
    finally:
        stop_embedded_server(pg_dir)


def test_the_endpoint_recovers_after_a_database_restart_without_being_restarted(embedded):
    pg_dir, url = embedded
    now = datetime.now(UTC)
    stamps = {"model_version": "v1", "generated_at": now, "valid_until": now + timedelta(hours=1)}
    ranks = pd.DataFrame(
        [
            {"user_id": u, "scope": "news", "items": [{"id": f"{u}-0", "score": 1.0, "confidence": 1.0}], **stamps}
            for u in USERS
        ]
    )
    glob = pd.DataFrame([{"scope": "news", "items": [{"id": "g", "score": 1.0, "confidence": 1.0}], **stamps}])
    publish_snapshot(url, Snapshot(ranks=ranks, global_ranks=glob))
    with serving_in_background(create_app(url, SETTINGS)) as base, ThreadPoolExecutor(8) as pool:
        ranking = f"{base}/v1/rankings/news"
        assert set(pool.map(lambda u: _status(ranking, u), USERS * 3)) == {200}  # several pooled connections
        stop_embedded_server(pg_dir)
        assert start_embedded_server(pg_dir) == url
        with psycopg.connect(url) as conn:  # the server is back; the endpoint's connections are all dead
            assert conn.execute("SELECT count(*) FROM personalization_ranks").fetchone()[0] == len(USERS)
        assert [_status(ranking, u) for u in USERS] == [200] * len(USERS)  # not one 503, first request included
        assert set(pool.map(lambda u: _status(ranking, u), USERS * 3)) == {200}
        with urllib.request.urlopen(f"{base}/readyz", timeout=30) as ready:
            assert ready.status == 200
