"""How the lookup API reaches PostgreSQL: as the restricted role, with the caller set per transaction.

The API logs in directly as :data:`schema.API_ROLE` (``api_database_url``, else the main
URL with its user replaced), so no session can ``RESET ROLE`` to anything stronger. Only
when that login is impossible does it log in with the main URL and ``SET ROLE``, and says
so in a warning. A login that cannot become the role, or a role that is a superuser or
bypasses row-level security, is refused: the API never runs with the pipeline's rights.

Each request runs in one transaction that first names the verified caller with
transaction-local ``set_config``; the row-level security policies read those settings. A read
of one query is a single round trip (:func:`caller_query`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import AsyncRowFactory, Row, tuple_row
from psycopg_pool import AsyncConnectionPool

from personalization_pipeline.serving.auth import Principal
from personalization_pipeline.serving.database import login_summary, normalize_url, with_user
from personalization_pipeline.serving.schema import API_ROLE, CALLER_ROLE_SETTING, CALLER_USER_SETTING

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5

_SET_ROLE = sql.SQL("SET ROLE {}").format(sql.Identifier(API_ROLE))
_CURRENT_ROLE_SQL = "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
_SET_CALLER_SQL = f"SELECT set_config('{CALLER_USER_SETTING}', %s, true), set_config('{CALLER_ROLE_SETTING}', %s, true)"


class ApiRoleError(RuntimeError):
    """The API cannot run as the restricted role (or the role has been given too much power)."""


@dataclass(frozen=True)
class ApiLogin:
    """The conninfo the API's pool connects with; ``set_role`` when it must then ``SET ROLE``."""

    conninfo: str
    set_role: bool


def resolve_api_login(
    main_url: str, api_url: str | None = None, connect_timeout: int = CONNECT_TIMEOUT_SECONDS
) -> ApiLogin:
    """Probe how to act as the API role: a direct login to ``api_url`` (default: ``main_url``
    as the API role), else ``main_url`` plus ``SET ROLE``. Logs which one was chosen.

    Raises :class:`ApiRoleError` when neither works, ``psycopg.OperationalError`` when the
    server cannot be reached at all.
    """
    direct = normalize_url(api_url) if api_url else with_user(main_url, API_ROLE)
    try:
        with psycopg.connect(direct, connect_timeout=connect_timeout) as conn:
            _check_role(conn)
    except psycopg.OperationalError as exc:
        refused = (str(exc).strip().splitlines() or ["login refused"])[-1]
    else:
        logger.info("lookup API logs in to PostgreSQL directly as %s (%s)", API_ROLE, login_summary(direct))
        return ApiLogin(direct, set_role=False)
    main = normalize_url(main_url)
    with psycopg.connect(main, connect_timeout=connect_timeout, autocommit=True) as conn:
        try:
            conn.execute(_SET_ROLE)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ApiRoleError(
                f"the lookup API can neither log in as {API_ROLE} ({refused}) nor SET ROLE to it"
                f" as {login_summary(main)}: set PERSONALIZATION_API_DATABASE_URL to a login of"
                f" {API_ROLE}, or GRANT {API_ROLE} TO the main user"
            ) from exc
        _check_role(conn)
    logger.warning(
        "lookup API cannot log in as %s (%s); it logs in as %s and uses SET ROLE, which a"
        " compromised session could undo with RESET ROLE: give %s a login"
        " (PERSONALIZATION_API_DATABASE_URL)",
        API_ROLE,
        refused,
        login_summary(main),
        API_ROLE,
    )
    return ApiLogin(main, set_role=True)


def _check_role(conn: psycopg.Connection) -> None:
    row = conn.execute(_CURRENT_ROLE_SQL).fetchone()
    if row is None or row[0] != API_ROLE:
        raise ApiRoleError(f"the API login acts as {row[0] if row else '?'}, not {API_ROLE}")
    if row[1] or row[2]:
        raise ApiRoleError(f"{API_ROLE} is a superuser or bypasses row-level security; refusing it")


class ApiConnector:
    """``conninfo`` and ``configure`` hooks of the API's connection pool.

    The login is probed on the first connection and kept; while the server is down the
    probe fails and the pool retries it with its next connection attempt.
    """

    def __init__(self, main_url: str, api_url: str | None = None) -> None:
        self._main_url = main_url
        self._api_url = api_url
        self._login: ApiLogin | None = None
        self._lock = asyncio.Lock()

    async def login(self) -> ApiLogin:
        async with self._lock:
            if self._login is None:
                self._login = await asyncio.to_thread(resolve_api_login, self._main_url, self._api_url)
            return self._login

    async def conninfo(self) -> str:
        return (await self.login()).conninfo

    async def configure(self, conn: psycopg.AsyncConnection) -> None:
        if (await self.login()).set_role:
            await conn.execute(_SET_ROLE)


@asynccontextmanager
async def caller_transaction(
    pool: AsyncConnectionPool, caller: Principal | None, timeout: float | None = None
) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection in a transaction whose row-level security caller is ``caller`` (none for
    reads of tables without per-user rows).

    No connection is pinged before use. One that the server dropped (a restart while the endpoint
    was idle) fails on the transaction's first statement: it is discarded, the pool replaces its
    other idle connections that died the same way, and the transaction starts once more.
    """
    conn = await _begin(pool, caller, timeout)
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
        raise
    else:
        await conn.execute("COMMIT")
    finally:
        await pool.putconn(conn)  # a broken connection is discarded by the pool


async def caller_query(
    pool: AsyncConnectionPool,
    caller: Principal | None,
    query: str,
    params: Any = None,
    row_factory: AsyncRowFactory[Row] = tuple_row,  # type: ignore[assignment]
    timeout: float | None = None,
) -> list[Row]:
    """The rows of one read ``query`` run as ``caller``; ``None`` for a query of tables without
    per-user rows, or of a function that names the caller itself (:data:`schema.SERVED_RANKING`).

    The caller and the query are pipelined in one round trip: statements up to the pipeline's
    Sync share one implicit transaction, so the transaction-local caller holds for the query
    and is gone when it ends. Without a caller the query is sent on its own (a pipeline costs
    the endpoint more client CPU than the query). A pooled connection the server dropped is
    discarded, the pool's other dead idle connections replaced, and the read run once more.
    """
    for attempt in (1, 2):
        conn = await pool.getconn(timeout=timeout)
        try:
            cur = conn.cursor(row_factory=row_factory)
            if caller is None:
                await cur.execute(query, params)
            else:
                async with conn.pipeline():
                    await conn.execute(_SET_CALLER_SQL, (caller.user_id, caller.role))
                    await cur.execute(query, params)
            return await cur.fetchall()
        except psycopg.OperationalError:
            if attempt == 2 or not conn.broken:
                raise
            logger.warning("a pooled connection to the serving database was dropped; reconnecting")
        finally:
            await pool.putconn(conn)  # the pool discards a broken connection and rolls back a failed one
        await pool.check()
    raise AssertionError("unreachable")


async def _begin(pool: AsyncConnectionPool, caller: Principal | None, timeout: float | None) -> psycopg.AsyncConnection:
    for attempt in (1, 2):
        conn = await pool.getconn(timeout=timeout)
        try:
            async with conn.pipeline():  # one round trip
                await conn.execute("BEGIN")
                if caller is not None:
                    await conn.execute(_SET_CALLER_SQL, (caller.user_id, caller.role))
            return conn
        except psycopg.OperationalError:
            await pool.putconn(conn)
            if attempt == 2:
                raise
            logger.warning("a pooled connection to the serving database was dropped; reconnecting")
            await pool.check()
    raise AssertionError("unreachable")
