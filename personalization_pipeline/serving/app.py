"""The FastAPI lookup app over the serving tables.

Access control holds in the database first: the pool (opened in the app's lifespan) acts
only as the restricted ``personalization_api`` role, and every request runs in one
transaction naming the verified caller for row-level security (see :mod:`api_access`). The
routes add the role matrix on top: client and reader their own data, monitor health only,
admin and superadmin everything plus metrics and ranking explanations (the only route that
returns rationale tags). Every error is JSON
``{"error": code, "detail": message}``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.responses import JSONResponse, Response
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from fastapi_offline import FastAPIOffline
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from personalization_pipeline.config import Settings
from personalization_pipeline.experiments.definition import MAX_NAME, NAME_PATTERN, Experiment, ExperimentSpec
from personalization_pipeline.experiments.store import ExperimentConflict
from personalization_pipeline.ids import MAX_ID_LENGTH, canonical_id
from personalization_pipeline.serving import experiments_admin, lookup, user_settings
from personalization_pipeline.serving.api_access import ApiConnector, caller_transaction
from personalization_pipeline.serving.api_models import (
    ErrorBody,
    ExperimentBody,
    ExperimentResultsBody,
    ExplanationBody,
    MetricsBody,
    RankingBody,
    SettingsBody,
    SettingsUpdate,
    ValidationErrorBody,
)
from personalization_pipeline.serving.auth import (
    ADMIN_ROLES,
    ID_PATTERN,
    READ_OWN_ROLES,
    WRITE_OWN_ROLES,
    AuthError,
    Principal,
    decode_token,
)
from personalization_pipeline.serving.database import normalize_url, resolve_database_url
from personalization_pipeline.serving.rankings_fast_path import DEFAULT_LIMIT, MAX_LIMIT, RankingsFastPath
from personalization_pipeline.serving.schema import ensure_schema

logger = logging.getLogger(__name__)

POOL_MIN_SIZE = 1
POOL_TIMEOUT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 5
APP_FACTORY = f"{__name__}:create_app_from_env"
"""Import string of :func:`create_app_from_env`, for uvicorn's worker processes."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    HTTPStatus.UNAUTHORIZED: {"model": ErrorBody, "description": "Missing, invalid or expired bearer token."},
    HTTPStatus.FORBIDDEN: {"model": ErrorBody, "description": "The token's role may not do this."},
    HTTPStatus.UNPROCESSABLE_ENTITY: {"model": ValidationErrorBody, "description": "Invalid path, query or body."},
    HTTPStatus.SERVICE_UNAVAILABLE: {"model": ErrorBody, "description": "The serving database is unreachable."},
}
_BAD_BODY: dict[int | str, dict[str, Any]] = {
    HTTPStatus.BAD_REQUEST: {"model": ErrorBody, "description": "The request body could not be read."}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {HTTPStatus.NOT_FOUND: {"model": ErrorBody}}

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Number of items to return (1-{MAX_LIMIT}).")]
Scope = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
ExperimentName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    HTTPStatus.CONFLICT: {"model": ErrorBody, "description": "The name is taken, or another experiment is active."}
}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _prepare_schema(url: str) -> None:
    """Create the serving tables, API role and grants if missing. A database that is down only
    delays readiness; a login without the rights to do it leaves the schema to the pipeline."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            ensure_schema(conn)
    except psycopg.OperationalError as exc:
        logger.warning("serving database not reachable at start-up: %s", exc)
    except psycopg.errors.InsufficientPrivilege as exc:
        logger.warning("serving schema left as it is (no right to create or grant): %s", exc)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the API serves at the request's path (one method per route)."""
    methods = {"OPTIONS"}
    for route in router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            allow = ", ".join(_allowed_methods(request))
            if request.method == "OPTIONS":
                return Response(status_code=HTTPStatus.NO_CONTENT, headers={"Allow": allow})
            return _error(exc.status_code, f"{request.method} is not allowed here; allowed: {allow}", {"Allow": allow})
        return _error(exc.status_code, str(exc.detail), dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        body = {"error": "validation_error", "detail": detail, "errors": jsonable_encoder(errors)}
        return JSONResponse(body, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("serving database unavailable: %s", exc)
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, "the serving database is unavailable")

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")


class _BearerCaller(SecurityBase):
    """The verified caller of a request, from its ``Authorization: Bearer`` token; the OpenAPI
    document shows it as the HTTP bearer scheme. One dependency rather than ``HTTPBearer`` plus one
    that decodes its credentials: solving each dependency costs every request."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="JWT signed with HS256; `sub` = user id.")
        self.scheme_name = "HTTPBearer"

    async def __call__(self, request: Request) -> Principal:
        challenge = {"WWW-Authenticate": 'Bearer realm="personalization"'}
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(HTTPStatus.UNAUTHORIZED, "missing bearer token", headers=challenge)
        settings: Settings = request.app.state.settings
        try:
            return decode_token(
                token,
                settings.jwt_secret,
                settings.jwt_issuer,
                settings.jwt_audience,
                settings.jwt_max_lifetime_seconds,
            )
        except AuthError as exc:
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            raise HTTPException(HTTPStatus.UNAUTHORIZED, str(exc), headers=challenge) from exc


async def _pool(request: Request) -> AsyncConnectionPool:  # async: as a dependency, a plain def would run in a thread
    """The app's connection pool."""
    return request.app.state.pool


_caller = _BearerCaller()
Caller = Annotated[Principal, Depends(_caller)]
_BEARER_SECURED: dict[str, Any] = {"security": [{_caller.scheme_name: []}]}
"""The OpenAPI security of a route that verifies its caller itself."""
Pool = Annotated[AsyncConnectionPool, Depends(_pool)]
router = APIRouter()


def _require(caller: Principal, roles: frozenset[str], action: str) -> None:
    if caller.role not in roles:
        raise HTTPException(HTTPStatus.FORBIDDEN, f"role {caller.role!r} may not {action}")


def _ranking_key(user_id: str, scope: str) -> tuple[str, str]:
    """``user_id`` under the id rule of ingest and tokens; ``scope`` in lower case, as ingest stores it."""
    return canonical_id(user_id) or user_id, scope.lower()


async def _read_ranking(request: Request, user_id: str | None, scope: str, limit: int) -> Response:
    """The rankings read, the endpoint's hot path, run by the two rankings routes and by
    :class:`RankingsFastPath`: it verifies its caller (``user_id`` None: the caller's own) and takes
    the pool itself, since FastAPI solves each dependency on every request."""
    caller = await _caller(request)
    _require(caller, READ_OWN_ROLES, "read rankings")
    user_id, scope = _ranking_key(caller.user_id if user_id is None else user_id, scope)
    if not caller.can_read_user(user_id):
        raise HTTPException(HTTPStatus.FORBIDDEN, f"role {caller.role!r} may only read its own rankings")
    body = await lookup.fetch_ranking_json(await _pool(request), caller, user_id, scope, limit)
    if body is None:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"unknown scope {scope!r}")
    return Response(body, media_type="application/json")  # written by PostgreSQL as RankingBody


@router.get("/healthz", tags=["health"], summary="Liveness (no database access).")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Readiness: the serving database answers and something has been published.",
    responses={HTTPStatus.SERVICE_UNAVAILABLE: {"model": ErrorBody}},
)
async def readyz(pool: Pool) -> dict[str, str]:
    if not await lookup.anything_published(pool, READY_TIMEOUT_SECONDS):
        raise HTTPException(HTTPStatus.SERVICE_UNAVAILABLE, "nothing has been published yet: run the nightly job")
    return {"status": "ready"}


@router.get(
    "/v1/rankings/{scope}",
    response_model=RankingBody,
    tags=["rankings"],
    summary="The caller's ranking for a scope.",
    responses=_ERRORS | _NOT_FOUND,
    openapi_extra=_BEARER_SECURED,
)
async def own_ranking(scope: Scope, request: Request, limit: Limit = DEFAULT_LIMIT) -> Response:
    return await _read_ranking(request, None, scope, limit)


@router.get(
    "/v1/users/{user_id}/rankings/{scope}",
    response_model=RankingBody,
    tags=["rankings"],
    summary="A user's ranking for a scope (own, or any for admins).",
    responses=_ERRORS | _NOT_FOUND,
    openapi_extra=_BEARER_SECURED,
)
async def user_ranking(user_id: UserId, scope: Scope, request: Request, limit: Limit = DEFAULT_LIMIT) -> Response:
    return await _read_ranking(request, user_id, scope, limit)


@router.get(
    "/v1/settings",
    response_model=SettingsBody,
    tags=["settings"],
    summary="The caller's personalization settings.",
    responses=_ERRORS,
)
async def read_settings(caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, READ_OWN_ROLES, "read settings")
    return asdict(await user_settings.get_user_settings(pool, caller))


@router.put(
    "/v1/settings",
    response_model=SettingsBody,
    tags=["settings"],
    summary="Opt the caller in or out of personalization (effective at once).",
    responses=_ERRORS | _BAD_BODY,
)
async def write_settings(update: SettingsUpdate, caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, WRITE_OWN_ROLES, "change settings")
    async with caller_transaction(pool, caller) as conn:
        stored = await user_settings.put_user_settings(
            conn, caller.user_id, update.personalization_enabled, update.data_sharing_consent
        )
    return asdict(stored)


@router.get(
    "/v1/admin/metrics",
    response_model=MetricsBody,
    tags=["admin"],
    summary="Metrics of the latest offline evaluation run.",
    responses=_ERRORS | _NOT_FOUND,
)
async def admin_metrics(caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "read metrics")
    run = await lookup.fetch_latest_eval(pool, caller)
    if run is None:
        raise HTTPException(HTTPStatus.NOT_FOUND, "no offline evaluation has been published yet")
    return asdict(run)


@router.get(
    "/v1/admin/users/{user_id}/rankings/{scope}/explanation",
    response_model=ExplanationBody,
    tags=["admin"],
    summary="A user's served ranking with the rationale tags (sources, boosts) that placed each item.",
    responses=_ERRORS | _NOT_FOUND,
)
async def admin_explanation(
    user_id: UserId, scope: Scope, caller: Caller, pool: Pool, limit: Limit = DEFAULT_LIMIT
) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "read ranking explanations")
    user_id, scope = _ranking_key(user_id, scope)
    explanation = await lookup.fetch_explanation(pool, caller, user_id, scope, limit)
    if explanation is None:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"user {user_id!r} has no personalized ranking for scope {scope!r}")
    return vars(explanation)


@router.post(
    "/v1/admin/experiments",
    response_model=ExperimentBody,
    status_code=HTTPStatus.CREATED,
    tags=["experiments"],
    summary="Create an A/B experiment (assignment starts with the next nightly run).",
    responses=_ERRORS | _BAD_BODY | _CONFLICT,
)
async def create_experiment(spec: ExperimentSpec, caller: Caller, pool: Pool, request: Request) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "create experiments")
    try:
        experiment = await experiments_admin.create(pool, caller, spec, request.app.state.settings.seed)
    except ExperimentConflict as exc:
        raise HTTPException(HTTPStatus.CONFLICT, str(exc)) from exc
    return experiment.model_dump(exclude={"salt"})


@router.get(
    "/v1/admin/experiments",
    response_model=list[ExperimentBody],
    tags=["experiments"],
    summary="Every experiment, newest first.",
    responses=_ERRORS,
)
async def list_experiments(caller: Caller, pool: Pool) -> list[dict[str, Any]]:
    _require(caller, ADMIN_ROLES, "read experiments")
    return [experiment.model_dump(exclude={"salt"}) for experiment in await experiments_admin.get(pool, caller)]


@router.get(
    "/v1/admin/experiments/{name}",
    response_model=ExperimentBody,
    tags=["experiments"],
    summary="One experiment.",
    responses=_ERRORS | _NOT_FOUND,
)
async def read_experiment(name: ExperimentName, caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "read experiments")
    return (await _experiment(pool, caller, name)).model_dump(exclude={"salt"})


async def _experiment(pool: AsyncConnectionPool, caller: Principal, name: str) -> Experiment:
    """The experiment ``name``; 404 when there is none."""
    found = await experiments_admin.get(pool, caller, name)
    if not found:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no experiment named {name!r}")
    return found[0]


@router.post(
    "/v1/admin/experiments/{name}/end",
    response_model=ExperimentBody,
    tags=["experiments"],
    summary="End an experiment: its users get the default ranking from the next publish.",
    responses=_ERRORS | _NOT_FOUND | _CONFLICT,
)
async def end_experiment(name: ExperimentName, caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "end experiments")
    ended = await experiments_admin.end(pool, caller, name)
    if ended is None:
        await _experiment(pool, caller, name)
        raise HTTPException(HTTPStatus.CONFLICT, f"experiment {name!r} has already ended")
    return ended.model_dump(exclude={"salt"})


@router.get(
    "/v1/admin/experiments/{name}/results",
    response_model=ExperimentResultsBody,
    tags=["experiments"],
    summary="The latest analysis of an experiment: per-variant rates, lift, p-value, verdict.",
    responses=_ERRORS | _NOT_FOUND,
)
async def experiment_results(name: ExperimentName, caller: Caller, pool: Pool) -> dict[str, Any]:
    _require(caller, ADMIN_ROLES, "read experiment results")
    await _experiment(pool, caller, name)
    return await experiments_admin.results(pool, caller, name)


def create_app(database_url: str, settings: Settings, *, fast_path: bool = True) -> FastAPI:
    """Build the lookup app over the serving tables at ``database_url``.

    That login (the pipeline's) creates the schema at start-up and is the ``SET ROLE``
    fallback; requests run as the API role (``settings.api_database_url``, else derived).
    ``fast_path`` False leaves the rankings reads to their routes alone, without
    :class:`RankingsFastPath` (the reference it is tested against).
    """
    url = normalize_url(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(_prepare_schema, url)
        connector = ApiConnector(url, settings.api_database_url)
        pool = AsyncConnectionPool(
            connector.conninfo,
            min_size=POOL_MIN_SIZE,
            max_size=settings.api_pool_size,
            timeout=POOL_TIMEOUT_SECONDS,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            configure=connector.configure,
            open=False,
            name="personalization-api",
        )
        await pool.open()
        app.state.pool = pool
        # What start-up built lives as long as the app: left to the collector, every full collection
        # walked it and stalled the worker (tier L, wrk: p99 47-100 ms without, 12-22 ms with)
        gc.freeze()
        try:
            yield
        finally:
            await pool.close()

    app = FastAPIOffline(  # the /docs and /redoc pages load their scripts from the app, not a CDN
        title="personalization_pipeline lookup API",
        summary="Precomputed rankings, opt-out settings and offline metrics.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    _install_error_handlers(app)
    # The routes join the app's own router: an included router is a second routing pass on every
    # request (FastAPI 0.165: about 10% of a rankings read's CPU in the app)
    app.router.routes.extend(router.routes)
    if fast_path:
        app.add_middleware(RankingsFastPath, read=_read_ranking)
    return app


def create_app_from_env() -> FastAPI:
    """The app over the configured serving database, as ``serve`` runs it in each worker process.

    With its own login configured (``api_database_url``), the endpoint never holds the pipeline's
    (owner) login.
    """
    settings = Settings.from_env()
    return create_app(settings.api_database_url or resolve_database_url(settings), settings)
