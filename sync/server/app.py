"""`create_app(settings)`: the FastAPI application of the sync server. Wiring only.

It assembles one app: the server key and the database (its schema brought up to date), the
long-poll wake-ups (`sync.server.wake`; on PostgreSQL also from other processes), the gate
middleware and response gzip, the routes of each area (`sync.server.routes`, route by route as in
`sync/PROTOCOL.md`), the OpenAPI document, and the error shape of every failure: a database that
cannot be reached is answered 503 ``unavailable`` with ``Retry-After``, a device of a team calling
a server on an empty database 503 too (``detail.reason = "no_teams"``). It must never import
anything but `sync.protocol` from the rest of the project, never open a sealed payload, and never
log a body, a payload, a device name or a token: log lines hold ids and counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match

from sync.protocol import PROTOCOL_VERSION, ErrorCode, PushRequest
from sync.server.config import ServerSettings
from sync.server.db import Database, migrate, unreachable
from sync.server.errors import ApiError, EmptyDatabase
from sync.server.keys import ServerKey, load_server_key
from sync.server.middleware import ProtocolGate
from sync.server.routes import ROUTES, Server
from sync.server.routes.log import GZIP_MINIMUM
from sync.server.wake import LogWatch, PgListener, new_origin

__all__ = ["create_app"]

log = logging.getLogger("outreach.server")

RETRY_AFTER_SECONDS = 5  # what a client is told to wait while the database cannot be reached


def _field_path(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if not parts or (len(parts) == 1 and isinstance(parts[0], int)):  # unreadable JSON: loc is a position
        return "body"
    return ".".join(str(part) for part in parts)


def create_app(
    settings: ServerSettings,
    *,
    database: Database | None = None,
    clock: Callable[[], float] = time.time,
    server_key: ServerKey | None = None,
) -> FastAPI:
    """Build the application: load the server key (or use `server_key`), open the database (or
    use `database`), bring its schema up to date, and wire the routes. `clock` is injectable so
    tests can expire codes and throttles."""
    key = server_key or load_server_key(settings)
    db = database or Database.from_settings(settings)
    migrate(db.engine)
    owns_db = database is None
    watch = LogWatch()
    origin = new_origin()  # names this process's NOTIFYs, which its own listener skips
    postgres = db.dialect == "postgresql"
    listener = PgListener(db.engine, watch, origin=origin) if postgres and settings.listen else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if listener is not None:
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                listener.stop()
            if owns_db:
                db.dispose()

    app = FastAPI(
        title="Outreach sync server",
        version=PROTOCOL_VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_PATH if settings.openapi else None,
    )
    app.openapi = lambda: _openapi_document(app)  # type: ignore[method-assign]
    server = Server(settings=settings, db=db, clock=clock, watch=watch, server_key=key, listener=listener,
                    origin=origin, postgres=postgres)
    app.state.ctx = server
    app.add_middleware(ProtocolGate, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        GZipMiddleware, minimum_size=GZIP_MINIMUM, compresslevel=5
    )  # 9: much more CPU, little gain on base64
    _install_error_handlers(app)
    for add_routes in ROUTES:  # in this order: the OpenAPI document lists the paths so
        add_routes(app.router, server)
    return app


OPENAPI_PATH = "/v1/openapi.json"


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document of the routes, plus `PushRequest`: the push route validates its
    raw body itself (twice as fast), so FastAPI does not see the schema. Built once."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            routes=app.routes,
            description="The Outreach sync protocol: see sync/PROTOCOL.md. Every byte string is "
            "URL-safe base64 without padding; every integer is at most 2^63 - 1.",
        )
        push = PushRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(push.pop("$defs", {}))
        schemas["PushRequest"] = push
        app.openapi_schema = document
    return app.openapi_schema


def _allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> list[str]:
    """Every method some route takes on the request's path (two routes may share a path)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    """The error shape of every failure."""
    def answer(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    def malformed(errors: list[dict[str, str]]) -> JSONResponse:
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return answer(
            ApiError(
                ErrorCode.MALFORMED,
                f"{first['field']}: {first['message']}",
                {"field": first["field"], "errors": errors},
            )
        )

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, error: ApiError) -> JSONResponse:
        return answer(error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        # Never echo `input`: it may be a sealed payload or a name.
        errors = [
            {
                "field": _field_path(item.get("loc", ())),
                "message": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
            for item in error.errors()
        ]
        return malformed(errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return answer(ApiError(ErrorCode.NOT_FOUND, "No such endpoint."))
        if error.status_code == 405:
            allowed = _allowed_methods(app, request.scope)
            return answer(
                ApiError(
                    ErrorCode.METHOD_NOT_ALLOWED,
                    f"This endpoint takes {', '.join(allowed)}.",
                    {"allow": allowed},
                    headers={"Allow": ", ".join(allowed)},
                )
            )
        if error.status_code == 400:
            # FastAPI's answer to a JSON body it could not read (nested deeper than `json` goes,
            # not UTF-8): the same as any other unreadable body.
            return malformed([{"field": "body", "message": "The body is not readable JSON.", "type": "json_invalid"}])
        code = ErrorCode.INTERNAL if error.status_code >= 500 else ErrorCode.MALFORMED
        return answer(ApiError(code, str(error.detail), status=error.status_code))

    @app.exception_handler(IntegrityError)
    async def on_integrity(_request: Request, error: IntegrityError) -> JSONResponse:
        # A concurrent request got there first (e.g. the same device id joined twice at once).
        log.warning("integrity conflict: %s", type(error.orig).__name__)
        return answer(
            ApiError(
                ErrorCode.CONFLICT, "A concurrent change conflicts with this request; nothing was stored."
            )
        )

    last_empty_warning = [float("-inf")]

    @app.exception_handler(EmptyDatabase)
    async def on_empty(_request: Request, error: EmptyDatabase) -> JSONResponse:
        now = time.monotonic()
        if now - last_empty_warning[0] >= 60:  # one line a minute, however many devices call
            last_empty_warning[0] = now
            log.warning(
                "a device of a team calls, but this database has no teams: the server was started on a "
                "new, empty database (%s), not its team's. Stop it and start it on the team's "
                "database (--db URL or --data-dir DIR; make run's is data/server.db)",
                app.state.ctx.db.label,
            )
        return answer(error)

    async def on_database(_request: Request, error: Exception) -> JSONResponse:
        if not unreachable(error):
            return await on_fault(_request, error)
        reason = getattr(error, "orig", None) or error
        log.warning("database unavailable: %s; answered 503", type(reason).__name__)
        return answer(
            ApiError(
                ErrorCode.UNAVAILABLE,
                "The server cannot reach its database just now; try again shortly. "
                "Your changes are kept on your device.",
                {"retry_after": RETRY_AFTER_SECONDS},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        )

    # Registered by class, not as `Exception`: answered here without a traceback in the log.
    app.add_exception_handler(DBAPIError, on_database)
    app.add_exception_handler(PoolTimeout, on_database)

    @app.exception_handler(Exception)
    async def on_fault(_request: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %s", type(error).__name__)
        return answer(ApiError(ErrorCode.INTERNAL, "A server fault; the request changed nothing."))
