"""Locating the serving database: configured URL or embedded pgserver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from personalization_pipeline.config import Settings
from personalization_pipeline.serving.api_access import resolve_api_login
from personalization_pipeline.serving.database import (
    login_summary,
    normalize_url,
    resolve_database_url,
    stop_embedded_server,
    with_database,
    with_user,
)
from personalization_pipeline.serving.retention import purge_expired
from personalization_pipeline.serving.schema import API_ROLE, SERVING_TABLES, ensure_schema


def settings(**changes) -> Settings:
    return Settings.from_env().model_copy(update=changes)


@pytest.mark.parametrize(
    "url",
    ["postgres://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db", "postgresql://u:p@h:5/db"],
)
def test_normalize_url(url: str) -> None:
    assert normalize_url(url) == "postgresql://u:p@h:5/db"


def test_conninfo_strings_are_kept() -> None:
    assert normalize_url("host=h dbname=a") == "host=h dbname=a"
    assert conninfo_to_dict(with_database("host=h dbname=a", "b")) == {"host": "h", "dbname": "b"}


def test_normalize_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        normalize_url("mysql://h/db")


def test_with_database_keeps_socket_host() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/sock"
    assert with_database(url, "x") == "postgresql://postgres:@/x?host=/tmp/sock"
    assert with_database("postgres://u@h:5432/a", "b") == "postgresql://u@h:5432/b"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://pipeline:secret@db:5432/serving?sslmode=require",
            {"user": "api", "host": "db", "port": "5432", "dbname": "serving", "sslmode": "require"},
        ),
        ("postgresql://postgres:@/postgres?host=/tmp/sock", {"user": "api", "host": "/tmp/sock", "dbname": "postgres"}),
        ("host=h dbname=a user=x password=y", {"user": "api", "host": "h", "dbname": "a"}),
    ],
)
def test_with_user_swaps_the_login_and_drops_the_password(url: str, expected: dict) -> None:
    assert conninfo_to_dict(with_user(url, "api")) == expected


def test_login_summary_never_shows_the_password() -> None:
    assert login_summary("postgres://u:secret@h:5/db") == "u@h:5/db"


def test_configured_url_wins(tmp_path: Path) -> None:
    resolved = resolve_database_url(
        settings(database_url="postgres://u@db:5432/serving", embedded_pg_dir=tmp_path / "pg")
    )
    assert resolved == "postgresql://u@db:5432/serving"
    assert not (tmp_path / "pg").exists()


def test_embedded_server_with_a_long_data_dir_is_started_and_reused(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5) / "pg"
    assert len(str(deep / ".s.PGSQL.5432")) > 107
    config = settings(database_url=None, embedded_pg_dir=deep)
    url = resolve_database_url(config)
    try:
        with psycopg.connect(url) as conn:
            ensure_schema(conn)
            ensure_schema(conn)
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename = ANY(%s)", (list(SERVING_TABLES),)
            ).fetchone()
        assert tables == (len(SERVING_TABLES),)
        assert resolve_database_url(config) == url
        login = resolve_api_login(url)  # pgserver trusts local sockets: the role logs in directly
        assert (login.set_role, login.conninfo) == (False, with_user(url, API_ROLE))
        with psycopg.connect(login.conninfo) as conn:
            assert conn.execute("SELECT current_user::text").fetchone() == (API_ROLE,)
    finally:
        stop_embedded_server(deep)
    assert not (deep / "postmaster.pid").exists()


def test_purge_with_retention_off_keeps_old_features_and_evals(clean_pg: str) -> None:
    old = datetime.now(UTC) - timedelta(days=4000)
    with psycopg.connect(clean_pg) as conn:
        conn.execute("INSERT INTO personalization_features VALUES ('u1', '{}', %s)", (old,))
        conn.execute("INSERT INTO personalization_eval VALUES ('r', 'als', 'ndcg', 10, 0.1, %s)", (old,))
    assert purge_expired(clean_pg, feature_retention=None, eval_retention=None)["features"] == 0
    counts = purge_expired(clean_pg, feature_retention=timedelta(days=30), eval_retention=timedelta(days=365))
    assert (counts["features"], counts["evals"]) == (1, 1)
