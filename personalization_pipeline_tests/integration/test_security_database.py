"""Access control in PostgreSQL itself, with the HTTP route guards bypassed.

Every query here runs on a connection of the lookup app's own pool (so as the API role,
logged in the way the app logs in), inside the app's per-request transaction where a
caller is named. The pipeline's superuser login is used only to inspect the catalogs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from personalization_pipeline.serving.api_access import (
    ApiLogin,
    ApiRoleError,
    caller_query,
    caller_transaction,
    resolve_api_login,
)
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import Principal
from personalization_pipeline.serving.database import with_user
from personalization_pipeline.serving.schema import (
    API_FUNCTIONS,
    API_ROLE,
    CALLER_USER_SETTING,
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENT_EXPOSURES,
    EXPERIMENT_RESULTS,
    EXPERIMENTS,
    FEATURES,
    PER_USER_TABLES,
    RANK_EXPLANATION,
    RANKS,
    RATIONALE,
    SERVED_RANKING,
    SERVING_TABLES,
    SETTINGS,
    SIMILAR_USERS,
)
from personalization_pipeline_tests.conftest import API_SETTINGS

INSUFFICIENT_PRIVILEGE = "42501"
INTERNAL_TABLES = (RATIONALE, FEATURES, SIMILAR_USERS, EXPERIMENT_ASSIGNMENTS, EXPERIMENT_EXPOSURES)
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
EXPECTED_PRIVILEGES = {
    "personalization_ranks": {"SELECT"},
    "personalization_global_ranks": {"SELECT"},
    "personalization_models": {"SELECT"},
    "personalization_eval": {"SELECT"},
    "personalization_settings": {"SELECT", "INSERT", "UPDATE"},
    "personalization_rank_rationale": set(),
    "personalization_features": set(),
    "personalization_similar_users": set(),
    "personalization_experiments": {"SELECT", "INSERT", "UPDATE"},
    "personalization_experiment_assignments": set(),
    "personalization_experiment_exposures": set(),
    "personalization_experiment_results": {"SELECT"},
}


def on_api_pool(
    client: TestClient, work: Callable[[psycopg.AsyncConnection], Awaitable[Any]], caller: Principal | None
) -> Any:
    """Run ``work`` on an app pool connection: in the app's request transaction for ``caller``,
    or, for ``None``, in a plain transaction where no caller is named."""
    pool = client.app.state.pool

    async def run() -> Any:
        if caller is None:
            async with pool.connection() as conn, conn.transaction():
                return await work(conn)
        async with caller_transaction(pool, caller) as conn:
            return await work(conn)

    return client.portal.call(run)


def fetch(client: TestClient, query: str, caller: Principal | None = None) -> list[tuple]:
    async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
        return await (await conn.execute(query)).fetchall()

    return on_api_pool(client, work, caller)


def sqlstate(client: TestClient, statements: list[str], caller: Principal | None = None) -> str | None:
    """SQLSTATE of the first failing statement (the transaction is rolled back), ``None`` if all pass."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        for statement in statements:
            await conn.execute(statement)

    try:
        on_api_pool(client, work, caller)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def as_superuser(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_app_logs_in_directly_as_the_api_role(served, api_client, caplog) -> None:
    assert fetch(api_client, "SELECT session_user::text, current_user::text") == [(API_ROLE, API_ROLE)]
    with caplog.at_level(logging.INFO, logger="personalization_pipeline.serving.api_access"):
        login = resolve_api_login(served.url)
    assert login == ApiLogin(with_user(served.url, API_ROLE), set_role=False)
    assert f"directly as {API_ROLE}" in caplog.text


def test_api_role_is_powerless_and_owns_nothing(served) -> None:
    [(login, superuser, bypass, create_role, create_db, replication, owned)] = as_superuser(
        served.url,
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication,"
        " (SELECT count(*) FROM pg_shdepend WHERE refobjid = r.oid AND deptype = 'o')"
        "  + (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
        "  + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
        "  + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
        " FROM pg_roles AS r WHERE rolname = %s",
        (API_ROLE,),
    )
    assert login and not any((superuser, bypass, create_role, create_db, replication))
    assert owned == 0


def test_api_role_has_exactly_the_grants_it_needs(served) -> None:
    granted = {
        table: {
            p
            for p in PRIVILEGES
            if as_superuser(served.url, "SELECT has_table_privilege(%s, %s, %s)", (API_ROLE, table, p))[0][0]
        }
        for table in SERVING_TABLES
    }
    assert granted == EXPECTED_PRIVILEGES
    column_access = as_superuser(
        served.url,
        "SELECT t, has_any_column_privilege(%s, t, 'SELECT, INSERT, UPDATE, REFERENCES') FROM unnest(%s::text[]) AS t",
        (API_ROLE, list(INTERNAL_TABLES)),
    )
    assert column_access == [(t, False) for t in INTERNAL_TABLES]
    secured = as_superuser(
        served.url,
        "SELECT relname::text FROM pg_class WHERE relrowsecurity AND oid = ANY(%s::text[]::regclass[])",
        (list(SERVING_TABLES),),
    )
    assert {r[0] for r in secured} == set(PER_USER_TABLES) | {EXPERIMENTS, EXPERIMENT_RESULTS}


@pytest.mark.parametrize("role", ["client", "reader", "monitor"])
def test_row_level_security_shows_each_caller_only_its_own_rows(served, api_client, role) -> None:
    for user in served.users:
        caller = Principal(user, role)
        ranks = fetch(api_client, f"SELECT user_id, scope FROM {RANKS} ORDER BY 1, 2", caller)
        assert ranks == [(user, scope) for scope in served.scopes]
        other = served.users[0] if user != served.users[0] else served.users[1]
        assert fetch(api_client, f"SELECT * FROM {RANKS} WHERE user_id = '{other}'", caller) == []
        settings = fetch(api_client, f"SELECT user_id FROM {SETTINGS}", caller)
        assert settings == ([(user,)] if user in served.settings_users else [])


@pytest.mark.parametrize("role", ["admin", "superadmin"])
def test_admins_read_every_users_rows(served, api_client, role) -> None:
    users = fetch(api_client, f"SELECT DISTINCT user_id FROM {RANKS} ORDER BY 1", Principal("boss", role))
    assert [u for (u,) in users] == sorted([*served.users, served.expired_user])
    settings = fetch(api_client, f"SELECT user_id FROM {SETTINGS} ORDER BY 1", Principal("boss", role))
    assert [u for (u,) in settings] == sorted(served.settings_users)


def test_without_a_caller_no_per_user_row_is_visible(served, api_client) -> None:
    assert fetch(api_client, f"SELECT count(*) FROM {RANKS}") == [(0,)]
    assert fetch(api_client, f"SELECT count(*) FROM {SETTINGS}") == [(0,)]
    assert fetch(api_client, "SELECT count(*) FROM personalization_global_ranks") == [(len(served.scopes),)]


def test_the_caller_is_transaction_local(served, api_client) -> None:
    """After the request's transaction ends, the same connection no longer names a caller."""
    pool = api_client.app.state.pool

    async def run() -> tuple[int, int]:
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT set_config('personalization.user_id', 'alice', true)")
                inside = (await (await conn.execute(f"SELECT count(*) FROM {RANKS}")).fetchone())[0]
            after = (await (await conn.execute(f"SELECT count(*) FROM {RANKS}")).fetchone())[0]
            return inside, after

    assert api_client.portal.call(run) == (len(served.scopes), 0)


def test_a_pipelined_read_names_its_caller_for_that_read_only(served) -> None:
    """``caller_query`` sends caller and query in one round trip; the next read on the same
    connection (a one-connection pool) sees no caller and no per-user row."""
    probe = f"SELECT pg_backend_pid(), current_setting('{CALLER_USER_SETTING}', true), count(*) FROM {RANKS}"

    async def run() -> list[tuple]:
        async with AsyncConnectionPool(
            with_user(served.url, API_ROLE), min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            return [
                *await caller_query(pool, Principal("alice", "client"), probe),
                *await caller_query(pool, None, probe),
                *await caller_query(pool, Principal("bob", "reader"), f"{probe} WHERE user_id = 'alice'"),
            ]

    (pid, alice, seen), (same_pid, nobody, unseen), (_, bob, other) = asyncio.run(run())
    assert (alice, seen) == ("alice", len(served.scopes))
    assert same_pid == pid and not nobody and unseen == 0
    assert (bob, other) == ("bob", 0)


@pytest.mark.parametrize("table", INTERNAL_TABLES)
@pytest.mark.parametrize("role", ["client", "admin"])
def test_internal_tables_are_unreadable(served, api_client, table, role) -> None:
    caller = Principal("alice", role)
    assert sqlstate(api_client, [f"SELECT * FROM {table}"], caller) == INSUFFICIENT_PRIVILEGE


EXPLAIN_ALICE = f"SELECT item_id, tags FROM {RANK_EXPLANATION}('alice', 'news', 100)"
EXPLANATION_SIGNATURE, SERVED_RANKING_SIGNATURE = API_FUNCTIONS


@pytest.mark.parametrize(
    "caller", [Principal("alice", "client"), Principal("alice", "reader"), Principal("alice", "monitor"), None]
)
def test_the_explanation_function_refuses_all_but_an_admin_caller(served, api_client, caller) -> None:
    assert sqlstate(api_client, [EXPLAIN_ALICE], caller) == INSUFFICIENT_PRIVILEGE


@pytest.mark.parametrize("role", ["admin", "superadmin"])
def test_an_admin_caller_reads_rationale_through_the_function_only(served, api_client, role) -> None:
    """The function runs as the tables' owner and joins the served items with their tags; the
    rationale table itself stays unreadable to the same caller."""
    admin = Principal("boss", role)
    assert [item for item, _ in fetch(api_client, EXPLAIN_ALICE, admin)] == [f"alice-news-{i}" for i in range(5)]
    expired = f"SELECT * FROM {RANK_EXPLANATION}('{served.expired_user}', 'news', 10)"
    assert fetch(api_client, expired, admin) == []
    assert sqlstate(api_client, [f"SELECT * FROM {RATIONALE}"], admin) == INSUFFICIENT_PRIVILEGE


@pytest.mark.parametrize(("signature", "definer"), [(EXPLANATION_SIGNATURE, True), (SERVED_RANKING_SIGNATURE, False)])
def test_only_the_owner_and_the_api_role_may_call_the_api_functions(served, signature, definer) -> None:
    """The explanation runs as the tables' owner; the served ranking as its caller (row-level security holds)."""
    [(owner, security_definer, config)] = as_superuser(
        served.url,
        "SELECT pg_get_userbyid(proowner)::text, prosecdef, proconfig FROM pg_proc WHERE oid = %s::regprocedure",
        (signature,),
    )
    assert security_definer == definer and config == ["search_path=public, pg_temp"]
    grantees = as_superuser(
        served.url,
        "SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END FROM pg_proc AS p,"
        " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a WHERE p.oid = %s::regprocedure",
        (signature,),
    )
    assert {g for (g,) in grantees} == {owner, API_ROLE}


@pytest.mark.parametrize(
    ("caller", "reader", "personalized"),
    [
        (Principal("alice", "client"), "alice", True),
        (Principal("bob", "client"), "alice", False),  # names bob: row-level security hides alice's row
        (Principal("bob", "reader"), "alice", False),
        (Principal("boss", "admin"), "alice", True),
        (Principal("alice", "client"), "dave", False),  # expired
    ],
)
def test_the_served_ranking_function_reads_as_the_caller_it_names_for_that_statement_only(
    served, caller, reader, personalized
) -> None:
    """On an autocommit connection of the API role, as the endpoint calls it: the caller it names
    decides which rows it sees, and is gone when the statement ends."""
    read = f"SELECT {SERVED_RANKING}(%s, %s, %s, 'news', 2)::json"
    probe = f"SELECT current_setting('{CALLER_USER_SETTING}', true), count(*) FROM {RANKS}"
    with psycopg.connect(with_user(served.url, API_ROLE), autocommit=True) as conn:
        [(body,)] = conn.execute(read, (caller.user_id, caller.role, reader)).fetchall()
        after = conn.execute(probe).fetchone()
    owner = reader if personalized else "g"
    assert (body["user_id"], body["personalized"]) == (reader, personalized)
    assert [item["id"] for item in body["items"]] == [f"{owner}-news-0", f"{owner}-news-1"]
    assert after is not None and not after[0] and after[1] == 0


@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO {RANKS} SELECT 'mallory', scope, items, model_version, variant, generated_at,"
        f" valid_until FROM {RANKS}",
        f"UPDATE {RANKS} SET items = '[]'",
        f"DELETE FROM {RANKS}",
        f"TRUNCATE {RANKS}",
        "UPDATE personalization_global_ranks SET items = '[]'",
        "DELETE FROM personalization_eval",
        "UPDATE personalization_models SET active = false",
        f"DELETE FROM {SETTINGS}",
        f"ALTER TABLE {RANKS} DISABLE ROW LEVEL SECURITY",
        f"DROP TABLE {RANKS}",
        "CREATE TABLE api_owned (a int)",
    ],
)
def test_api_role_cannot_change_data_or_schema(served, api_client, statement) -> None:
    fingerprint = f"SELECT count(*), md5(string_agg(items::text, ',' ORDER BY user_id, scope)) FROM {RANKS}"
    before = as_superuser(served.url, fingerprint)
    assert sqlstate(api_client, [statement], Principal("alice", "admin")) == INSUFFICIENT_PRIVILEGE
    assert as_superuser(served.url, fingerprint) == before


def test_settings_writes_are_limited_to_the_callers_own_row(served, api_client) -> None:
    alice = Principal("alice", "client")
    insert_bob = f"INSERT INTO {SETTINGS} (user_id, personalization_enabled) VALUES ('bob', false)"
    assert sqlstate(api_client, [insert_bob], alice) == INSUFFICIENT_PRIVILEGE
    assert sqlstate(api_client, [insert_bob], Principal("boss", "admin")) == INSUFFICIENT_PRIVILEGE

    async def update_bob(conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(f"UPDATE {SETTINGS} SET personalization_enabled = false WHERE user_id = 'bob'")
        return cur.rowcount

    assert on_api_pool(api_client, update_bob, alice) == 0
    assert on_api_pool(api_client, update_bob, Principal("boss", "superadmin")) == 0
    move_own_row = f"UPDATE {SETTINGS} SET user_id = 'bob-2' WHERE user_id = 'alice'"
    assert sqlstate(api_client, [move_own_row], alice) == INSUFFICIENT_PRIVILEGE
    stored = as_superuser(served.url, f"SELECT user_id, personalization_enabled FROM {SETTINGS} ORDER BY 1")
    assert stored == [(u, True) for u in served.settings_users]


@pytest.mark.parametrize(
    "escape",
    [
        ["SET ROLE postgres"],
        ["SET SESSION AUTHORIZATION postgres"],
        ["RESET ROLE", f"SELECT * FROM {RATIONALE}"],
        ["SET ROLE NONE", f"SELECT * FROM {FEATURES}"],
        ["SET row_security = off", f"SELECT * FROM {RANKS}"],
        ["SELECT set_config('role', 'postgres', false)"],
    ],
)
def test_a_direct_login_cannot_escape_the_role(served, api_client, escape) -> None:
    assert sqlstate(api_client, escape, Principal("alice", "client")) == INSUFFICIENT_PRIVILEGE
    assert fetch(api_client, "SELECT session_user::text, current_user::text") == [(API_ROLE, API_ROLE)]


@pytest.fixture
def member_login(served) -> Iterator[str]:
    """A throw-away login role (dropped afterwards) that may SET ROLE to the API role."""
    name = f"pp_test_login_{secrets.token_hex(4)}"
    with psycopg.connect(served.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(name), sql.Identifier(API_ROLE)))
    try:
        yield name
    finally:
        with psycopg.connect(served.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_set_role_fallback_when_a_direct_login_is_impossible(served, api_client, bearer, member_login, caplog) -> None:
    """Without a usable API login the app logs in as the main user and SET ROLEs, says so in a
    warning, and still serves through row-level security. Such a session can RESET ROLE back to
    its login (a throw-away non-superuser here): that is why the direct login is the default."""
    main_url = with_user(served.url, member_login)
    api_url = with_user(served.url, f"pp_test_nobody_{secrets.token_hex(4)}")  # no such role
    with caplog.at_level(logging.WARNING, logger="personalization_pipeline.serving.api_access"):
        assert resolve_api_login(main_url, api_url) == ApiLogin(main_url, set_role=True)
    assert "uses SET ROLE" in caplog.text and "RESET ROLE" in caplog.text
    settings = api_client.app.state.settings.model_copy(update={"api_database_url": api_url})
    with TestClient(create_app(main_url, settings)) as client:
        body = client.get("/v1/rankings/news", headers=bearer("alice")).json()
        assert (body["personalized"], body["items"][0]["id"]) == (True, "alice-news-0")
        alice = Principal("alice", "client")
        assert fetch(client, "SELECT current_user::text") == [(API_ROLE,)]
        assert fetch(client, f"SELECT DISTINCT user_id FROM {RANKS}", alice) == [("alice",)]
        assert sqlstate(client, [f"SELECT * FROM {RATIONALE}"], alice) == INSUFFICIENT_PRIVILEGE

        async def reset_role(conn: psycopg.AsyncConnection) -> str:
            await conn.execute("RESET ROLE")
            escaped = (await (await conn.execute("SELECT current_user::text")).fetchone())[0]
            await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(API_ROLE)))
            return escaped

        assert on_api_pool(client, reset_role, alice) == member_login


def test_an_api_login_that_cannot_become_the_role_is_refused(served) -> None:
    """Neither a direct login nor SET ROLE: the app must not fall back to the pipeline's login."""
    name = f"pp_test_stranger_{secrets.token_hex(4)}"
    with psycopg.connect(served.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        with pytest.raises(ApiRoleError, match="neither log in"):
            resolve_api_login(with_user(served.url, name), with_user(served.url, name + "_nobody"))
    finally:
        with psycopg.connect(served.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_app_given_only_the_api_login_serves_without_the_owner_login(served, bearer) -> None:
    """What `serve` does when PERSONALIZATION_API_DATABASE_URL is set: no owner credentials."""
    api_url = with_user(served.url, API_ROLE)
    settings = API_SETTINGS.model_copy(update={"api_database_url": api_url})
    with TestClient(create_app(api_url, settings)) as client:
        body = client.get("/v1/rankings/news", headers=bearer("alice")).json()
        assert body["personalized"] is True and body["items"][0]["id"] == "alice-news-0"
        assert client.get("/readyz").status_code == 200
