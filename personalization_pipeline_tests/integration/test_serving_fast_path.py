"""The rankings fast path answers every request exactly as the rankings routes do (real PostgreSQL,
both apps side by side), and serves itself only the well-formed reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot
from personalization_pipeline.serving.rankings_fast_path import RankingsFastPath, ranking_request
from personalization_pipeline_tests.integration.test_serving_api import NOW, SETTINGS, items, user_row

Headers = list[tuple[str, str]]


def bearer(user_id: str, role: str = "client", ttl_seconds: int = 3600, secret: str = SETTINGS.jwt_secret) -> Headers:
    return [("Authorization", f"Bearer {mint_token(secret, user_id, role=role, ttl_seconds=ttl_seconds)}")]


@pytest.fixture(scope="module")
def fast_and_routes(reset_pg: Callable[[], str]) -> Iterator[tuple[TestClient, TestClient]]:
    """The app with the fast path and the app without it, over the same published rankings."""
    url = reset_pg()
    day = timedelta(hours=24)
    ranks = pd.DataFrame(
        [user_row("u1", day), user_row("u2", day), user_row("52", day), user_row("expired", -day), user_row("out", day)]
    )
    global_ranks = pd.DataFrame(
        [{"scope": "news", "items": items("g", 30), "model_version": "pop-v1", "generated_at": NOW, "valid_until": NOW}]
    )
    publish_snapshot(url, Snapshot(ranks, global_ranks))
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO personalization_settings (user_id, personalization_enabled) VALUES ('out', false)")
    with (
        TestClient(create_app(url, SETTINGS), follow_redirects=False) as fast,
        TestClient(create_app(url, SETTINGS, fast_path=False), follow_redirects=False) as routes,
    ):
        yield fast, routes


READS: list[tuple[str, str, Headers]] = [
    ("GET", "/v1/rankings/news", bearer("u1")),
    ("GET", "/v1/rankings/NEWS?limit=1", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=100", bearer("u2", "reader")),
    ("GET", "/v1/rankings/news", bearer("expired")),
    ("GET", "/v1/rankings/news", bearer("out")),
    ("GET", "/v1/rankings/news", bearer("nobody")),
    ("GET", "/v1/rankings/sports", bearer("u1")),
    ("GET", "/v1/rankings/" + "x" * 200, bearer("u1")),
    ("GET", "/v1/users/u2/rankings/news?limit=3", bearer("boss", "admin")),
    ("GET", "/v1/users/%2052.0%20/rankings/news", bearer("boss", "superadmin")),
    ("GET", "/v1/users/out/rankings/news", bearer("boss", "admin")),
    ("GET", "/v1/users/u1/rankings/news", bearer("u1")),
    ("GET", "/v1/users/u2/rankings/news", bearer("u1")),
    ("GET", "/v1/rankings/news", bearer("m", "monitor")),
    ("GET", "/v1/rankings/news", []),
    ("GET", "/v1/rankings/news", [("Authorization", "Basic dTE6cHc=")]),
    ("GET", "/v1/rankings/news", [("Authorization", "bearer " + bearer("u1")[0][1].split()[1])]),
    ("GET", "/v1/rankings/news", bearer("u1", secret="another-secret-0123456789abcdef0123456789")),
    ("GET", "/v1/rankings/news", bearer("u1", ttl_seconds=-1)),
    ("GET", "/v1/rankings/news", bearer("u1") + bearer("u2")),
]
"""Well-formed reads: served by the fast path, whatever the answer."""

OTHERS: list[tuple[str, str, Headers]] = [
    ("GET", "/v1/rankings/news?limit=0", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=101", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=007", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=+5", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=abc", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=5&limit=2", bearer("u1")),
    ("GET", "/v1/rankings/news?limit=5&debug=1", bearer("u1")),
    ("GET", "/v1/rankings/news/", bearer("u1")),
    ("GET", "/v1/rankings/" + "x" * 201, bearer("u1")),
    ("GET", "/v1/rankings/ne%01ws", bearer("u1")),
    ("GET", "/v1/rankings/news%0A", bearer("u1")),
    ("GET", "/v1/users/u1/rankings", bearer("u1")),
    ("GET", "/v1/users/u1/scores/news", bearer("u1")),
    ("GET", "/v1/users/u%7F1/rankings/news", bearer("boss", "admin")),
    ("HEAD", "/v1/rankings/news", bearer("u1")),
    ("POST", "/v1/rankings/news", bearer("u1")),
    ("OPTIONS", "/v1/rankings/news", []),
]
"""Everything else: left to the routes."""


def answer(client: TestClient, method: str, path: str, headers: Headers) -> tuple[int, bytes, list[tuple[str, str]]]:
    response = client.request(method, path, headers=headers)
    return response.status_code, response.content, response.headers.multi_items()


@pytest.mark.parametrize(("method", "path", "headers"), READS + OTHERS)
def test_the_fast_path_answers_as_the_routes_do(
    fast_and_routes: tuple[TestClient, TestClient], method: str, path: str, headers: Headers
) -> None:
    fast, routes = fast_and_routes
    assert answer(fast, method, path, headers) == answer(routes, method, path, headers)
    taken = ranking_request(scope_of(method, unquote(urlsplit(path).path), urlsplit(path).query.encode()))
    assert (taken is not None) == ((method, path, headers) in READS)  # the list it is in says which app served it


def test_the_reads_cover_every_answer_the_fast_path_gives(fast_and_routes: tuple[TestClient, TestClient]) -> None:
    """The side-by-side cases reach a served ranking, the global fallback and each error the read raises."""
    fast, routes = fast_and_routes
    assert [m.cls for m in fast.app.user_middleware] == [RankingsFastPath]
    assert not routes.app.user_middleware
    seen = {(status, body.startswith(b'{"user_id"')) for status, body, _ in (answer(fast, *read) for read in READS)}
    assert seen == {(200, True), (401, False), (403, False), (404, False)}
    served = [fast.request(m, p, headers=h).json() for m, p, h in READS[:6]]
    assert [body["personalized"] for body in served] == [True, True, True, False, False, False]
    assert [len(body["items"]) for body in served] == [10, 1, 20, 10, 10, 10]
    assert "reason" not in served[0]["items"][0]


def scope_of(method: str, path: str, query: bytes = b"", root_path: str = "") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query, "root_path": root_path}


@pytest.mark.parametrize(
    ("scope", "wanted"),
    [
        (scope_of("GET", "/v1/rankings/news"), (None, "news", 10)),
        (scope_of("GET", "/v1/rankings/News", b"limit=100"), (None, "News", 100)),
        (scope_of("GET", "/v1/users/ 52 /rankings/news", b"limit=1"), (" 52 ", "news", 1)),
        (scope_of("GET", "/v1/rankings/news", b"limit=101"), None),
        (scope_of("GET", "/v1/rankings/news", b"limit=05"), None),
        (scope_of("GET", "/v1/rankings/news", b"limit=5&limit=6"), None),
        (scope_of("GET", "/v1/rankings/news\n"), None),
        (scope_of("GET", "/v1/rankings/" + "é" * 201), None),
        (scope_of("GET", "/v1/rankings/"), None),
        (scope_of("GET", "/v1/users//rankings/news"), None),
        (scope_of("GET", "/v1/rankings/news", root_path="/api"), None),
        (scope_of("PUT", "/v1/rankings/news"), None),
        ({"type": "websocket", "path": "/v1/rankings/news", "query_string": b""}, None),
    ],
)
def test_only_well_formed_reads_take_the_fast_path(scope: dict, wanted: tuple | None) -> None:
    assert ranking_request(scope) == wanted


def test_an_unreachable_database_gets_the_routes_answer() -> None:
    down = "postgresql://postgres@127.0.0.1:1/none"
    with (
        TestClient(create_app(down, SETTINGS)) as fast,
        TestClient(create_app(down, SETTINGS, fast_path=False)) as routes,
    ):
        fast_answer = answer(fast, "GET", "/v1/rankings/news", bearer("u1"))
        assert fast_answer == answer(routes, "GET", "/v1/rankings/news", bearer("u1"))
        assert fast_answer[0] == 503
