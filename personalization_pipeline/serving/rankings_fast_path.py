"""The rankings reads served past FastAPI's per-request machinery.

A pure ASGI middleware in front of the app's routes: a well-formed
``GET /v1/rankings/{scope}`` or ``GET /v1/users/{user_id}/rankings/{scope}`` (path segments and
``limit`` valid by the routes' own rules, no other query parameter) goes straight to the read
the two routes run; every other request goes to the routes untouched. An error of that read (no
or a bad token, a role that may not read, an unknown scope, the database down) is answered by the
app's own exception handler for it, so each response is the one the route would give. The routes
stay the reference and the source of the OpenAPI document.

Why: routing, parameter validation and dependency solving cost a rankings read about as much CPU
in the worker as the read itself (in process on tier S data under uvloop: 270-315 µs per read
through the routes, 160-190 µs through this middleware).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from personalization_pipeline.ids import MAX_ID_LENGTH
from personalization_pipeline.serving.auth import ID_PATTERN

RankingRead = Callable[[Request, str | None, str, int], Awaitable[Response]]
"""The routes' read: (request, user id or ``None`` for the caller's own, scope, limit) -> response."""

OWN_PREFIX = "/v1/rankings/"
USERS_PREFIX = "/v1/users/"
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_SEGMENT = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
_LIMIT_QUERY = re.compile(rb"limit=([1-9][0-9]{0,2})")
"""``limit`` in plain decimal; any other spelling, even one the routes accept, is left to them."""


def _segment(value: str) -> bool:
    """Whether ``value`` is a path parameter the routes accept (1-200 characters, none a control
    one, no ``/``)."""
    return len(value) <= MAX_ID_LENGTH and "/" not in value and _SEGMENT.fullmatch(value) is not None


def ranking_request(scope: Scope) -> tuple[str | None, str, int] | None:
    """``(user id or None for the caller's own, scope, limit)`` of a well-formed rankings read;
    ``None`` for any other request."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if path.startswith(OWN_PREFIX):
        user_id, ranking_scope = None, path[len(OWN_PREFIX) :]
    elif path.startswith(USERS_PREFIX):
        parts = path[len(USERS_PREFIX) :].split("/")
        if len(parts) != 3 or parts[1] != "rankings" or not _segment(parts[0]):
            return None
        user_id, ranking_scope = parts[0], parts[2]
    else:
        return None
    if not _segment(ranking_scope):
        return None
    query: bytes = scope["query_string"]
    if not query:
        return user_id, ranking_scope, DEFAULT_LIMIT
    matched = _LIMIT_QUERY.fullmatch(query)
    if matched is None or int(matched[1]) > MAX_LIMIT:
        return None
    return user_id, ranking_scope, int(matched[1])


class RankingsFastPath:
    """Serves well-formed rankings reads with ``read`` (see the module); the rest go to ``app``."""

    def __init__(self, app: ASGIApp, read: RankingRead) -> None:
        self.app = app
        self.read = read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = ranking_request(scope)
        if wanted is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.read(request, *wanted)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise  # to the server error handler outside, as from the routes
            response = await handler(request, exc)  # the app's handlers are all coroutines
        await response(scope, receive, send)


def _handler(handlers: dict[object, Callable], exc: Exception) -> Callable | None:
    """The app's handler for ``exc`` as Starlette's exception middleware finds it (by class, nearest
    first); the catch-all ``Exception`` handler is not one of them (it runs outside, at the top)."""
    for cls in type(exc).__mro__:
        if cls is not Exception and cls in handlers:
            return handlers[cls]
    return None
