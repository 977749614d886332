"""Shared fixtures: a throw-away PostgreSQL database for the whole test session.

With ``PERSONALIZATION_TEST_DATABASE_URL`` set (e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``) a fresh database is created on that
server; otherwise an embedded ``pgserver`` is started in a temporary directory.
Either way the database is dropped at the end. The lookup API's role
(``personalization_api``) is cluster-wide: ``ensure_schema`` creates it idempotently, it is
shared by concurrent runs and never dropped; anything else a test creates is removed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from personalization_pipeline.config import Settings
from personalization_pipeline.dbt_manifest import prepare_manifest
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.serving.database import (
    normalize_url,
    start_embedded_server,
    stop_embedded_server,
    with_database,
)
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot
from personalization_pipeline.serving.schema import ensure_schema

prepare_manifest()  # before any test module loads the definitions (they read the manifest)


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a session-private PostgreSQL database."""
    server_url = os.environ.get("PERSONALIZATION_TEST_DATABASE_URL")
    pg_dir = None
    if server_url:
        server_url = normalize_url(server_url)
    else:
        pg_dir = tmp_path_factory.mktemp("pg") / "data"
        server_url = start_embedded_server(pg_dir)
    dbname = f"pp_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield with_database(server_url, dbname)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        if pg_dir is not None:
            stop_embedded_server(pg_dir)


@pytest.fixture(scope="session")
def reset_pg(pg_url: str) -> Callable[[], str]:
    """Callable that empties the session database (fresh serving schema) and returns its URL."""

    def reset() -> str:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            ensure_schema(conn)
        return pg_url

    return reset


@pytest.fixture
def clean_pg(reset_pg: Callable[[], str]) -> str:
    """``pg_url`` with empty serving tables, for one test."""
    return reset_pg()


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards)."""
    name = f"pp_empty_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(normalize_url(pg_url), name)
    try:
        yield url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class ServedData:
    """What :func:`served` published: each user's items are ``{user}-{scope}-{i}``, the
    global ones ``g-{scope}-{i}``; ``expired_user`` has only an expired ``news`` ranking."""

    url: str
    users: tuple[str, ...] = ("alice", "bob", "carol")
    scopes: tuple[str, ...] = ("news", "sports")
    expired_user: str = "dave"
    settings_users: tuple[str, ...] = ("alice", "bob")


def _ranked(prefix: str, n: int = 5) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "score": 1 - i / 10, "confidence": 0.5} for i in range(n)]


@pytest.fixture(scope="module")
def served(reset_pg: Callable[[], str]) -> ServedData:
    """A fresh serving database holding every table's data for several users."""
    data = ServedData(reset_pg())
    now = datetime.now(UTC)
    stamps = {"model_version": "als-v1", "generated_at": now, "valid_until": now + timedelta(hours=24)}
    ranks = pd.DataFrame(
        [
            {"user_id": u, "scope": s, "items": _ranked(f"{u}-{s}"), "variant": "als", **stamps}
            for u in data.users
            for s in data.scopes
        ]
        + [
            {
                "user_id": data.expired_user,
                "scope": "news",
                "items": _ranked(f"{data.expired_user}-news"),
                "variant": "als",
                **stamps,
                "valid_until": now - timedelta(minutes=1),
            }
        ]
    )
    global_ranks = pd.DataFrame(
        [{"scope": s, "items": _ranked(f"g-{s}"), **stamps, "model_version": "pop-v1"} for s in data.scopes]
    )
    users = list(data.users)
    publish_snapshot(
        data.url,
        Snapshot(
            ranks,
            global_ranks,
            features=pd.DataFrame({"user_id": users, "features": [{"engagement": 1.0}] * 3, "computed_at": now}),
            models=pd.DataFrame([{"model_name": "als", "model_version": "als-v1", "trained_at": now, "active": True}]),
            evals=pd.DataFrame(
                {
                    "run_id": "r1",
                    "model_name": "als",
                    "metric": ["ndcg", "recall"],
                    "k": 10,
                    "value": [0.3, 0.2],
                    "computed_at": now,
                }
            ),
            rationale=ranks[["user_id", "scope"]].assign(tags=[["because-you-viewed"]] * len(ranks)),
            similar_users=pd.DataFrame(
                {
                    "user_id": users,
                    "similar_user_id": users[1:] + users[:1],
                    "similarity_score": 0.5,
                    "calculated_at": now,
                }
            ),
        ),
    )
    with psycopg.connect(data.url) as conn:
        conn.execute(
            "INSERT INTO personalization_settings (user_id, personalization_enabled, data_sharing_consent)"
            " SELECT unnest(%s::text[]), true, true",
            (list(data.settings_users),),
        )
    return data


API_SETTINGS = Settings.from_env().model_copy(
    update={
        "jwt_secret": "security-test-secret-" + "0123456789abcdef" * 4,
        "jwt_issuer": "pp-tests",
        "jwt_audience": "pp-apps",
        "api_database_url": None,
    }
)


@pytest.fixture(scope="module")
def api_client(served: ServedData) -> Iterator[TestClient]:
    """The lookup app over :func:`served`, with JWT issuer and audience configured."""
    with TestClient(create_app(served.url, API_SETTINGS)) as client:
        yield client


@pytest.fixture(scope="session")
def bearer() -> Callable[..., dict[str, str]]:
    """``bearer(user, role)``: an Authorization header the :func:`api_client` accepts."""

    def headers(user_id: str, role: str = "client") -> dict[str, str]:
        token = mint_token(
            API_SETTINGS.jwt_secret,
            user_id,
            role=role,
            issuer=API_SETTINGS.jwt_issuer,
            audience=API_SETTINGS.jwt_audience,
        )
        return {"Authorization": f"Bearer {token}"}

    return headers
