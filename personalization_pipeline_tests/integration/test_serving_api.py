"""The lookup API through FastAPI's TestClient against real PostgreSQL."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import jwt
import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.config import Settings
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.serving.publish import Snapshot, publish_snapshot

NOW = datetime.now(UTC)
SETTINGS = Settings.from_env().model_copy(
    update={"jwt_secret": "api-test-secret-0123456789abcdef0123456789", "jwt_issuer": None, "jwt_audience": None}
)


def items(prefix: str, n: int) -> list[dict]:
    """``n`` items; each carries an internal ``reason`` that must never be served."""
    return [
        {"id": f"{prefix}{i}", "score": round(1 - i / 100, 2), "confidence": 0.5, "reason": "secret"} for i in range(n)
    ]


def user_row(user_id: str, valid_for: timedelta) -> dict:
    return {
        "user_id": user_id,
        "scope": "news",
        "items": items(f"{user_id}-", 20),
        "model_version": "als-v3",
        "experiment": "rerank-test",
        "variant": "treatment",
        "generated_at": NOW,
        "valid_until": NOW + valid_for,
    }


TAGS = (["source:als"], ["boost:diversity", "source:ease"], [])


def rationale_of(user_id: str) -> list[dict]:
    """The rationale publish writes for :func:`user_row`: per item, in rank order, the tags that placed it."""
    return [{"id": f"{user_id}-{i}", "rank": i + 1, "tags": TAGS[i % len(TAGS)]} for i in range(20)]


@pytest.fixture(scope="module")
def client(reset_pg: Callable[[], str]) -> Iterator[TestClient]:
    url = reset_pg()
    day = timedelta(hours=24)
    ranks = pd.DataFrame(
        [
            user_row("u1", day),
            user_row("u2", day),
            user_row("expired", -timedelta(minutes=1)),
            user_row("optout", day),
            user_row("toggler", day),
            user_row("switcher", day),
        ]
    )
    global_ranks = pd.DataFrame(
        [
            {
                "scope": "news",
                "items": items("g", 30),
                "model_version": "pop-v1",
                "generated_at": NOW,
                "valid_until": NOW + day,
            }
        ]
    )
    evals = pd.DataFrame(
        {
            "run_id": ["old", "old", "new", "new"],
            "model_name": ["als", "als", "als", "popularity"],
            "metric": "ndcg",
            "k": [10, 5, 10, 10],
            "value": [0.1, 0.2, 0.3, 0.25],
            "computed_at": [NOW - timedelta(days=7)] * 2 + [NOW] * 2,
        }
    )
    explained = ranks[ranks["user_id"] != "u2"]  # u2's ranking comes from a model that tags nothing
    rationale = explained[["user_id", "scope"]].assign(tags=explained["user_id"].map(rationale_of))
    publish_snapshot(url, Snapshot(ranks, global_ranks, evals=evals, rationale=rationale))
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO personalization_settings (user_id, personalization_enabled)"
            " VALUES ('optout', false), ('u1', true)"
        )
    with TestClient(create_app(url, SETTINGS)) as test_client:
        yield test_client


def auth(user_id: str, role: str = "client") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SETTINGS.jwt_secret, user_id, role=role)}"}


def assert_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error and isinstance(body["detail"], str) and body["detail"]
    return body


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_reports_unreachable_database() -> None:
    with TestClient(create_app("postgresql://postgres@127.0.0.1:1/none", SETTINGS)) as down:
        assert down.get("/healthz").status_code == 200
        assert_error(down.get("/readyz"), 503, "service_unavailable")


def test_what_start_up_built_is_kept_out_of_full_collections() -> None:
    """A worker's start-up objects are frozen once the app is up: full collections of them stalled
    reads under load."""
    gc.unfreeze()
    with TestClient(create_app("postgresql://postgres@127.0.0.1:1/none", SETTINGS)) as started:
        assert started.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 0


def test_own_ranking_is_personalized_and_limited(client: TestClient) -> None:
    body = client.get("/v1/rankings/news", headers=auth("u1")).json()
    assert set(body) == {
        "user_id",
        "scope",
        "items",
        "personalized",
        "model_version",
        "experiment",
        "variant",
        "generated_at",
        "valid_until",
    }
    assert (body["experiment"], body["variant"]) == ("rerank-test", "treatment")
    assert (body["user_id"], body["scope"], body["personalized"], body["model_version"]) == (
        "u1",
        "news",
        True,
        "als-v3",
    )
    assert [i["id"] for i in body["items"]] == [f"u1-{i}" for i in range(10)]
    assert body["items"][0] == {"id": "u1-0", "score": 1.0, "confidence": 0.5}
    assert datetime.fromisoformat(body["valid_until"]) > NOW
    limited = client.get("/v1/rankings/news?limit=3", headers=auth("u1")).json()
    assert [i["id"] for i in limited["items"]] == ["u1-0", "u1-1", "u1-2"]
    assert len(client.get("/v1/rankings/news?limit=100", headers=auth("u1")).json()["items"]) == 20


def test_missing_or_bad_tokens_are_401(client: TestClient) -> None:
    for headers in [
        {},
        {"Authorization": "Basic dTE6cHc="},
        {"Authorization": f"Bearer {mint_token('another-secret-0123456789abcdef0123456789', 'u1')}"},
        {"Authorization": f"Bearer {mint_token(SETTINGS.jwt_secret, 'u1', ttl_seconds=-1)}"},
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "u1", "role": "owner", "exp": NOW + timedelta(hours=1)}, SETTINGS.jwt_secret)
        },
    ]:
        response = client.get("/v1/rankings/news", headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_malformed_rankings_read_is_refused_before_its_token_is_read(client: TestClient) -> None:
    """The rankings routes verify their caller themselves, after FastAPI has validated path and query."""
    assert_error(client.get("/v1/rankings/news?limit=0"), 422, "validation_error")
    assert_error(client.get("/v1/users/u1/rankings/news?limit=101"), 422, "validation_error")
    assert_error(client.get("/v1/rankings/news?limit=5"), 401, "unauthorized")


def test_expired_token_message(client: TestClient) -> None:
    expired = {"Authorization": f"Bearer {mint_token(SETTINGS.jwt_secret, 'u1', ttl_seconds=-1)}"}
    assert "expired" in client.get("/v1/rankings/news", headers=expired).json()["detail"]


def test_user_route_permissions(client: TestClient) -> None:
    assert client.get("/v1/users/u1/rankings/news", headers=auth("u1")).json()["personalized"]
    assert client.get("/v1/users/u1/rankings/news", headers=auth("u1", "reader")).status_code == 200
    assert_error(client.get("/v1/users/u2/rankings/news", headers=auth("u1")), 403, "forbidden")
    assert_error(client.get("/v1/users/u2/rankings/news", headers=auth("u1", "reader")), 403, "forbidden")
    for role in ("admin", "superadmin"):
        body = client.get("/v1/users/u2/rankings/news", headers=auth("boss", role)).json()
        assert (body["user_id"], body["personalized"], body["items"][0]["id"]) == ("u2", True, "u2-0")
    assert_error(client.get("/v1/rankings/news", headers=auth("m", "monitor")), 403, "forbidden")
    assert_error(client.get("/v1/users/m/rankings/news", headers=auth("m", "monitor")), 403, "forbidden")


@pytest.mark.parametrize("user_id", ["never-seen", "expired", "optout"])
def test_fallback_to_global_ranking(client: TestClient, user_id: str) -> None:
    body = client.get("/v1/rankings/news?limit=5", headers=auth(user_id)).json()
    assert (body["user_id"], body["personalized"], body["model_version"]) == (user_id, False, "pop-v1")
    assert [i["id"] for i in body["items"]] == ["g0", "g1", "g2", "g3", "g4"]


def test_opt_out_and_back_take_effect_at_once(client: TestClient) -> None:
    """Opting out turns the very next read into the global ranking, with no pipeline run.

    Opting back in personalizes the next read again at once: the user's published row is
    still there and valid (until the next run, which drops an opted-out user's rows, or
    its ``valid_until``), and only the opt-out flag hid it.
    """
    headers = auth("toggler")
    assert client.get("/v1/settings", headers=headers).json() == {
        "user_id": "toggler",
        "personalization_enabled": True,
        "data_sharing_consent": None,
        "updated_at": None,
    }
    assert client.get("/v1/rankings/news", headers=headers).json()["items"][0]["id"] == "toggler-0"
    stored = client.put(
        "/v1/settings", headers=headers, json={"personalization_enabled": False, "data_sharing_consent": True}
    ).json()
    assert (stored["personalization_enabled"], stored["data_sharing_consent"]) == (False, True)
    opted_out = client.get("/v1/rankings/news", headers=headers).json()
    assert (opted_out["personalized"], opted_out["model_version"]) == (False, "pop-v1")
    assert (opted_out["experiment"], opted_out["variant"]) == (None, None)  # the fallback is in no experiment
    assert [i["id"] for i in opted_out["items"]] == [f"g{i}" for i in range(10)]
    stored = client.put("/v1/settings", headers=headers, json={"personalization_enabled": True}).json()
    assert (stored["personalization_enabled"], stored["data_sharing_consent"]) == (True, True)
    opted_in = client.get("/v1/rankings/news", headers=headers).json()
    assert (opted_in["personalized"], opted_in["items"][0]["id"]) == (True, "toggler-0")


def test_settings_permissions_and_validation(client: TestClient) -> None:
    assert_error(
        client.put("/v1/settings", headers=auth("r", "reader"), json={"personalization_enabled": False}),
        403,
        "forbidden",
    )
    assert_error(client.get("/v1/settings", headers=auth("m", "monitor")), 403, "forbidden")
    assert_error(client.put("/v1/settings", headers=auth("u1"), json={"enabled": False}), 422, "validation_error")


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_invalid_limit_is_422(client: TestClient, limit: str) -> None:
    body = assert_error(client.get(f"/v1/rankings/news?limit={limit}", headers=auth("u1")), 422, "validation_error")
    assert "limit" in body["detail"]


def test_scope_is_case_insensitive(client: TestClient) -> None:
    body = client.get("/v1/rankings/NEWS?limit=2", headers=auth("u1")).json()
    assert body["scope"] == "news" and body["personalized"] is True


def test_global_fallback_outlives_its_valid_until(client: TestClient, pg_url: str) -> None:
    """A late or blocked nightly run must degrade reads to the fallback, not fail them."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE personalization_global_ranks SET valid_until = now() - interval '1 hour'")
    try:
        body = client.get("/v1/rankings/news?limit=3", headers=auth("expired")).json()
        assert (body["personalized"], [i["id"] for i in body["items"]]) == (False, ["g0", "g1", "g2"])
    finally:
        with psycopg.connect(pg_url) as conn:
            conn.execute("UPDATE personalization_global_ranks SET valid_until = now() + interval '24 hours'")


def test_unknown_scope_and_route_are_404(client: TestClient) -> None:
    body = assert_error(client.get("/v1/rankings/sports", headers=auth("u1")), 404, "not_found")
    assert "sports" in body["detail"]
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")


def test_admin_metrics_show_latest_run(client: TestClient) -> None:
    body = client.get("/v1/admin/metrics", headers=auth("boss", "admin")).json()
    assert body["run_id"] == "new"
    assert body["metrics"] == [
        {"model_name": "als", "metric": "ndcg", "k": 10, "value": 0.3},
        {"model_name": "popularity", "metric": "ndcg", "k": 10, "value": 0.25},
    ]
    assert client.get("/v1/admin/metrics", headers=auth("boss", "superadmin")).status_code == 200
    for role in ("client", "reader", "monitor"):
        assert_error(client.get("/v1/admin/metrics", headers=auth("x", role)), 403, "forbidden")


def test_api_connections_cannot_read_rationale_or_features(client: TestClient) -> None:
    pool = client.app.state.pool

    async def probe() -> tuple[str, str]:
        async with pool.connection() as conn:
            role = (await (await conn.execute("SELECT current_user")).fetchone())[0]
            try:
                await conn.execute("SELECT tags FROM personalization_rank_rationale")
            except psycopg.errors.InsufficientPrivilege as exc:
                return role, type(exc).__name__
            return role, "readable"

    assert client.portal.call(probe) == ("personalization_api", "InsufficientPrivilege")


def explanation(client: TestClient, user_id: str, scope: str = "news", role: str = "admin", query: str = ""):
    return client.get(f"/v1/admin/users/{user_id}/rankings/{scope}/explanation{query}", headers=auth("boss", role))


def test_admin_explanation_joins_each_served_item_with_its_published_tags(client: TestClient) -> None:
    body = explanation(client, "u1", query="?limit=100").json()
    served = client.get("/v1/users/u1/rankings/news?limit=100", headers=auth("boss", "admin")).json()
    assert set(body) == {"user_id", "scope", "model_version", "generated_at", "valid_until", "items"}
    assert [body[k] for k in ("user_id", "scope", "model_version", "generated_at", "valid_until")] == [
        served[k] for k in ("user_id", "scope", "model_version", "generated_at", "valid_until")
    ]
    published = zip(rationale_of("u1"), items("u1-", 20), strict=True)
    assert body["items"] == [
        {"rank": tagged["rank"], "item_id": tagged["id"], "score": item["score"], "tags": tagged["tags"]}
        for tagged, item in published
    ]
    assert [i["item_id"] for i in body["items"]] == [i["id"] for i in served["items"]]
    assert explanation(client, "u1", "NEWS", "superadmin").json()["items"] == body["items"][:10]
    assert explanation(client, "u1", query="?limit=2").json()["items"] == body["items"][:2]


def test_an_item_without_published_tags_is_explained_with_none(client: TestClient) -> None:
    body = explanation(client, "u2", query="?limit=100").json()
    assert [(i["rank"], i["item_id"], i["tags"]) for i in body["items"]] == [(n + 1, f"u2-{n}", []) for n in range(20)]


def test_explanation_is_for_admins_only(client: TestClient) -> None:
    for role in ("client", "reader", "monitor"):
        for user_id in ("u1", "boss"):
            assert_error(explanation(client, user_id, role=role), 403, "forbidden")
        own = client.get("/v1/admin/users/u1/rankings/news/explanation", headers=auth("u1", role))
        assert_error(own, 403, "forbidden")


@pytest.mark.parametrize(("user_id", "scope"), [("never-seen", "news"), ("u1", "sports"), ("expired", "news")])
def test_explanation_of_no_served_personal_ranking_is_404(client: TestClient, user_id: str, scope: str) -> None:
    body = assert_error(explanation(client, user_id, scope), 404, "not_found")
    assert user_id in body["detail"] and scope in body["detail"]


def test_an_opted_out_users_ranking_is_never_explained(client: TestClient) -> None:
    """Opted out in the settings table, or through the endpoint just now: 404 at once, like the
    ranking read's fallback; opting back in explains the still published ranking again."""
    assert_error(explanation(client, "optout"), 404, "not_found")
    headers = auth("switcher")
    assert explanation(client, "switcher").status_code == 200
    client.put("/v1/settings", headers=headers, json={"personalization_enabled": False}).raise_for_status()
    assert_error(explanation(client, "switcher"), 404, "not_found")
    client.put("/v1/settings", headers=headers, json={"personalization_enabled": True}).raise_for_status()
    assert explanation(client, "switcher").json()["items"][0]["tags"] == TAGS[0]


def test_ranking_reads_never_carry_tags(client: TestClient) -> None:
    reads = [
        client.get("/v1/rankings/news?limit=100", headers=auth("u1")),
        client.get("/v1/users/u1/rankings/news?limit=100", headers=auth("u1", "reader")),
        client.get("/v1/users/u1/rankings/news?limit=100", headers=auth("boss", "admin")),
        client.get("/v1/users/u1/rankings/news?limit=100", headers=auth("boss", "superadmin")),
    ]
    for read in reads:
        body = read.json()
        assert body["personalized"] and "tags" not in body
        assert all(set(item) == {"id", "score", "confidence"} for item in body["items"])
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["RankedItem"]["properties"]) == {"id", "score", "confidence"}


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {
        "/v1/rankings/{scope}",
        "/v1/users/{user_id}/rankings/{scope}",
        "/v1/settings",
        "/v1/admin/metrics",
        "/v1/admin/users/{user_id}/rankings/{scope}/explanation",
        "/healthz",
        "/readyz",
    } <= set(paths)
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "JWT signed with HS256; `sub` = user id.",
    }
    for secured in ("/v1/rankings/{scope}", "/v1/users/{user_id}/rankings/{scope}", "/v1/settings"):
        assert paths[secured]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    token = auth("u1")["Authorization"].removeprefix("Bearer ")
    for scheme in ("bearer", "BEARER"):
        response = client.get("/v1/rankings/news", headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 200 and response.json()["user_id"] == "u1"


def test_readyz_says_nothing_is_published_yet(clean_pg: str) -> None:
    """A fresh install answers 503 with the reason until the first publish, then 200."""
    with TestClient(create_app(clean_pg, SETTINGS)) as fresh:
        body = assert_error(fresh.get("/readyz"), 503, "service_unavailable")
        assert "nothing has been published yet" in body["detail"]
        glob = pd.DataFrame(
            [
                {
                    "scope": "news",
                    "items": items("g", 3),
                    "model_version": "pop-v1",
                    "generated_at": NOW,
                    "valid_until": NOW + timedelta(hours=24),
                }
            ]
        )
        publish_snapshot(
            clean_pg, Snapshot(ranks=pd.DataFrame(columns=list(user_row("x", timedelta()))), global_ranks=glob)
        )
        assert fresh.get("/readyz").json() == {"status": "ready"}


def test_options_and_wrong_methods_list_every_allowed_method(client: TestClient) -> None:
    options = client.options("/v1/settings")
    assert options.status_code == 204 and options.headers["allow"] == "GET, OPTIONS, PUT"
    wrong = client.delete("/v1/settings")
    body = assert_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET, OPTIONS, PUT" and "PUT" in body["detail"]
    assert client.options("/v1/rankings/news").headers["allow"] == "GET, OPTIONS"


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"personalization_enabled": tru}'])
def test_every_error_status_of_a_bad_body_is_in_the_openapi_document(client: TestClient, raw: bytes) -> None:
    token = mint_token(SETTINGS.jwt_secret, "u1")
    response = client.put(
        "/v1/settings", content=raw, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    documented = client.get("/openapi.json").json()["paths"]["/v1/settings"]["put"]["responses"]
    assert str(response.status_code) in documented and response.status_code in (400, 422)
    schema = documented["422"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema == "ValidationErrorBody" and set(response.json()) <= {"error", "detail", "errors"}
    assert "400" in documented


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_everything_from_the_app_itself(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert not re.findall(r"https?://", html.text)  # no CDN: the page works without internet
    assets = re.findall(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""", html.text)
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts and "/openapi.json" in assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 100, asset


def test_every_response_field_is_described_and_every_body_has_an_example(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"RankingBody", "RankedItem", "SettingsBody", "MetricsBody", "ErrorBody"} <= set(schemas)
    for name, schema in schemas.items():
        for field, spec in schema["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
        if name.endswith(("Body", "Update")):
            (example,) = schema["examples"]
            assert set(example) <= set(schema["properties"]) and set(schema.get("required", [])) <= set(example), name
    confidence = schemas["RankedItem"]["properties"]["confidence"]
    assert (confidence["minimum"], confidence["maximum"]) == (0, 1)
