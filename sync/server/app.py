"""`create_app(settings)`: the FastAPI application of the sync server, route by route as in
`sync/PROTOCOL.md`.

It owns the wiring: the gate middleware and response gzip, the error shape of every failure,
authentication by bearer token (only SHA-256 hashes are stored), who may call what (pending devices
only `/v1/me` and `GET /v1/keys`, revoked devices nowhere, with ``detail.wipe``), and the decoding
of wire values into plain ones for `crud`. A database that cannot be reached is answered 503
``unavailable`` with ``Retry-After``, a device of a team calling a server on an empty database
503 too (``detail.reason = "no_teams"``); long-polls are woken through `sync.server.wake` (on
PostgreSQL also by other processes). Handlers hold no SQL. It must never import anything but
`sync.protocol` from the rest of the project, never open a sealed payload, and never log a body, a
payload, a device name or a token: log lines hold ids and counts.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match

from sync.protocol import (
    MAX_CHECKPOINT_PARTS,
    MAX_INT,
    MAX_PAYLOAD_BYTES,
    MAX_PULL_LIMIT,
    MAX_PUSH_BYTES,
    MAX_WAIT_SECONDS,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    PUSH_REQUEST,
    SUPPORTED_MAJORS,
    CheckpointIn,
    CheckpointList,
    CheckpointOut,
    CheckpointPartIn,
    CheckpointPartResponse,
    DeviceList,
    DevicePublic,
    DeviceStatus,
    ErrorCode,
    ErrorResponse,
    HealthResponse,
    InviteRequest,
    InviteResponse,
    JoinRequest,
    JoinResponse,
    KeysResponse,
    KeysUpload,
    MeResponse,
    PullResponse,
    PurgeRequest,
    PurgeResponse,
    PushRequest,
    PushResponse,
    RecoverRequest,
    RecoverResponse,
    RecoveryUpload,
    RevokeResponse,
    Role,
    RosterEntryOut,
    RosterResponse,
    RosterUpload,
    SigningKeyAnnounce,
    WrappedKey,
    b64d,
    b64e,
    encode_pull,
)
from sync.server import crud
from sync.server.config import ServerSettings
from sync.server.continuity import held_through, log_end
from sync.server.db import Database, has_teams, migrate, unreachable
from sync.server.errors import STATUS, ApiError, EmptyDatabase
from sync.server.keys import ServerKey, load_server_key
from sync.server.middleware import ProtocolGate
from sync.server.tables import WrappedKeyRow
from sync.server.wake import LogWatch, PgListener, announce, new_origin

__all__ = ["create_app"]

log = logging.getLogger("outreach.server")

MAX_PULL_BYTES = 4 * 1024 * 1024  # payload bytes in one pull page; `more` tells the client to go on
# A waiting long-poll re-reads the database this often (seconds) when nothing tells it of other
# processes' pushes (SQLite; PostgreSQL while the listening connection is lost), and this often as a
# mere safety net while `PgListener` hears them.
LONGPOLL_RECHECK_SECONDS = 2.0
LONGPOLL_SAFETY_SECONDS = 20.0
RETRY_AFTER_SECONDS = 5  # what a client is told to wait while the database cannot be reached


def _decode(value: str, field: str, *, size: int | None = None) -> bytes:
    try:
        data = b64d(value)
    except ValueError:
        raise ApiError(ErrorCode.MALFORMED, f"{field}: not valid base64.", {"field": field}) from None
    if size is not None and len(data) != size:
        raise ApiError(ErrorCode.MALFORMED, f"{field}: must be {size} bytes.", {"field": field})
    return data


def _field_path(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if not parts or (len(parts) == 1 and isinstance(parts[0], int)):  # unreadable JSON: loc is a position
        return "body"
    return ".".join(str(part) for part in parts)


def _wrapped(rows: Sequence[WrappedKeyRow]) -> list[WrappedKey]:
    return [WrappedKey(epoch=row.epoch, device_id=row.device_id, wrapped=b64e(row.blob)) for row in rows]


@dataclass(frozen=True)
class _Context:
    settings: ServerSettings
    db: Database
    clock: Callable[[], float]
    watch: LogWatch
    server_key: ServerKey
    listener: PgListener | None


def throttle_address(host: str) -> str:
    """What the code-lookup throttle counts a client by: an IPv4 address as it is (an IPv4-mapped
    IPv6 address too), an IPv6 address by its /64, the network one subscriber gets (rotating
    inside it costs nothing). Not an address (a test client, a Unix socket): as it is."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a zone id names no other host
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class Caller:
    """The authenticated device of a request, as plain values."""

    id: str
    team_id: str
    role: str
    status: str
    last_seen: float | None


_BEARER = HTTPBearer(auto_error=False, description="The device token from `/v1/join` or `/v1/recover`.")


async def _bearer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> str:
    """The SHA-256 hex of the request's bearer token; the device is looked up inside the handler's
    own transaction (`_authenticate`), so a request costs one transaction, not two."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "Send Authorization: Bearer <device token>.")
    token_hash = _TokenHash(crud.sha256_hex(token))
    token_hash.well_formed = _TOKEN_SHAPE.fullmatch(token) is not None
    return token_hash


Token = Annotated[str, Depends(_bearer)]

# `Outreach-Protocol`, as the OpenAPI document states it. `ProtocolGate` answers an unknown major
# (400) before any route; this pattern holds the rest to `<major>.<minor>` (422 naming the header),
# so that the server takes exactly what the document admits.
_VERSION_PATTERN = "^(" + "|".join(str(major) for major in SUPPORTED_MAJORS) + r")\.(0|[1-9][0-9]{0,5})$"


async def _protocol(
    version: Annotated[str, Header(alias=PROTOCOL_HEADER, pattern=_VERSION_PATTERN, examples=[PROTOCOL_VERSION])],
) -> None:
    return None


async def _protocol_optional(
    version: Annotated[
        str | None, Header(alias=PROTOCOL_HEADER, pattern=_VERSION_PATTERN, examples=[PROTOCOL_VERSION])
    ] = None,
) -> None:
    return None


def _answers(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for the OpenAPI document: each status with the codes it may
    carry. Every route may answer `unsupported_protocol`, `malformed`, `too_large` and `internal`."""
    every = (ErrorCode.UNSUPPORTED_PROTOCOL, ErrorCode.MALFORMED, ErrorCode.TOO_LARGE, ErrorCode.INTERNAL)
    by_status: dict[int, list[str]] = {}
    for code in (*every, *codes):
        by_status.setdefault(STATUS[code], []).append(code.value)
    return {
        status: {"model": ErrorResponse, "description": "error.code: " + ", ".join(names)}
        for status, names in sorted(by_status.items())
    }


_AUTHENTICATED = (ErrorCode.UNAUTHENTICATED, ErrorCode.DEVICE_REVOKED, ErrorCode.DEVICE_PENDING,
                  ErrorCode.FORBIDDEN)
_WRITES = (*_AUTHENTICATED, ErrorCode.CONFLICT)  # a concurrent write may conflict (409 conflict)
_ENROLL = (ErrorCode.CODE_INVALID, ErrorCode.THROTTLED, ErrorCode.CONFLICT)


class _TokenHash(str):
    """The SHA-256 hex of a bearer token, knowing whether the token had the shape of the tokens
    this server hands out (43 characters of URL-safe base64): an unknown one of that shape comes
    from a device of some team."""

    well_formed: bool = False


_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def _authenticate(
    session: Session, token_hash: str, *, allow_pending: bool = False, coordinator: bool = False
) -> Caller:
    """The device holding the token, if it may make this call. Pending (and rejected) devices only
    with ``allow_pending`` (`/v1/me`, `GET /v1/keys`), revoked devices never (with ``detail.wipe``)."""
    row = crud.device_by_token(session, token_hash=token_hash)
    if row is None:
        if getattr(token_hash, "well_formed", False) and not has_teams(session):
            raise EmptyDatabase()  # a server started on a new, empty database: not the device's fault
        raise ApiError(ErrorCode.UNAUTHENTICATED, "Unknown device token.")
    device = Caller(*row)
    if device.status == DeviceStatus.REVOKED:
        # the coordinator's signed word, for the device to check before it erases anything
        entry = crud.roster_entry(session, team_id=device.team_id, device_id=device.id)
        raise ApiError(
            ErrorCode.DEVICE_REVOKED,
            "This device was revoked: erase its team data.",
            {"wipe": True, "revocation": b64e(entry) if entry else None},
        )
    if device.status != DeviceStatus.ACTIVE and not allow_pending:
        if device.status == DeviceStatus.PENDING:
            raise ApiError(ErrorCode.DEVICE_PENDING, "The coordinator has not let this device in yet.")
        raise ApiError(
            ErrorCode.FORBIDDEN, "The coordinator rejected this device.", {"status": device.status}
        )
    if coordinator and device.role != Role.COORDINATOR:
        raise ApiError(ErrorCode.FORBIDDEN, "Only a coordinator may do this.")
    return device


def _json(model: BaseModel) -> Response:
    """The model as a finished response: FastAPI neither validates it again nor serializes it twice."""
    return Response(model.model_dump_json(), media_type="application/json")


GZIP_MINIMUM = 1000  # bytes: smaller responses go as they are
PULL_GZIP_LEVEL = 1  # payloads are ciphertext in base64: level 1 saves what level 9 does

try:  # ISA-L's deflate: the same gzip, ~8x faster than zlib's level 1 on a pull page (and smaller)
    from isal import igzip as _pull_gzip
except ImportError:  # a platform without its wheels: zlib
    _pull_gzip = gzip  # type: ignore[no-redef,misc]


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            params = params.strip()
            q = params[2:].strip() if params.startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def _pull_response(page: crud.PullPage, gzip_ok: bool) -> Response:
    """A pull page as a finished response. Built without validation: every value came from the
    database, validated when pushed (`encode_pull` writes what `PullResponse` would)."""
    body = encode_pull(page.ops, page.purges, page.next, page.more, page.current_epoch, page.batches,
                       page.held_through)
    if gzip_ok and len(body) >= GZIP_MINIMUM:
        return Response(_pull_gzip.compress(body, PULL_GZIP_LEVEL, mtime=0), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(body, media_type="application/json")


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
    app.state.ctx = _Context(settings=settings, db=db, clock=clock, watch=watch, server_key=key, listener=listener)
    app.add_middleware(ProtocolGate, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        GZipMiddleware, minimum_size=GZIP_MINIMUM, compresslevel=5
    )  # 9: much more CPU, little gain on base64
    _install_error_handlers(app)

    def changed(session: Session, team_id: str) -> None:
        """In the writing transaction: other processes' long-polls of the team wake at its commit."""
        if postgres:
            announce(session, team_id=team_id, origin=origin)

    def recheck_seconds() -> float:
        """How long a long-poll waits before it re-reads the database anyway: as configured, else
        a safety net while the listener hears other processes, else (SQLite, or the listening
        connection lost) often enough to see their pushes."""
        if settings.longpoll_recheck_seconds is not None:
            return settings.longpoll_recheck_seconds
        if listener is not None and listener.connected.is_set():
            return LONGPOLL_SAFETY_SECONDS
        return LONGPOLL_RECHECK_SECONDS

    def client_address(request: Request) -> str:
        """The client as the throttle counts it. `request.client` is the peer, or the address a
        trusted proxy forwarded (uvicorn's --forwarded-allow-ips: `settings.forwarded_allow_ips`)."""
        return throttle_address(request.client.host) if request.client else "unknown"

    def throttled(message: str, retry_after: float, scope: str) -> ApiError:
        seconds = int(retry_after + 0.999)
        return ApiError(ErrorCode.THROTTLED, message, {"retry_after": seconds, "scope": scope},
                        headers={"Retry-After": str(seconds)})

    def check_throttle(address: str, now: float) -> None:
        with db.transaction() as session:
            retry_after = crud.throttle_retry_after(
                session,
                address=address,
                now=now,
                limit=settings.throttle_failures,
                window=settings.throttle_window_seconds,
            )
            server_wide = None if retry_after is not None else crud.server_throttle_retry_after(
                session, now=now, limit=settings.throttle_server_failures_per_minute
            )
        if retry_after is not None:
            log.warning("throttled code lookups from one address")
            raise throttled("Too many wrong codes from this address: wait and try again.", retry_after, "address")
        if server_wide is not None:
            log.warning("throttled code lookups from every address: %d failures in a minute",
                        settings.throttle_server_failures_per_minute)
            raise throttled("Too many wrong codes at this server: wait and try again.", server_wide, "server")

    def code_failed(address: str, now: float) -> ApiError:
        with db.transaction(write=True) as session:
            crud.record_failure(session, address=address, now=now, window=settings.throttle_window_seconds)
        return ApiError(ErrorCode.CODE_INVALID, "This code is unknown, used or expired.")

    # --- routes ------------------------------------------------------------------------------

    @app.get("/v1/health", response_model=HealthResponse, dependencies=[Depends(_protocol_optional)],
             responses=_answers())
    def health() -> Response:
        with db.transaction() as session:
            crud.ping(session)
        return _json(HealthResponse(database=db.dialect))

    @app.post("/v1/join", dependencies=[Depends(_protocol)], responses=_answers(*_ENROLL))
    def join(body: JoinRequest, request: Request) -> JoinResponse:
        now, address = clock(), client_address(request)
        public_key = _decode(body.public_key, "public_key", size=32)
        proof = _decode(body.proof, "proof")
        signing_key = _decode(body.signing_key, "signing_key", size=32) if body.signing_key else None
        check_throttle(address, now)
        token = secrets.token_urlsafe(32)
        with db.transaction(write=True) as session:
            joined = crud.join_team(
                session,
                key=key,
                lookup=body.lookup,
                device_id=body.device_id,
                name=body.device_name,
                public_key=public_key,
                proof=proof,
                token_hash=crud.sha256_hex(token),
                now=now,
                signing_key=signing_key,
            )
        if joined is None:
            raise code_failed(address, now)
        team, device, founding = joined
        log.info("join team=%s device=%s status=%s founding=%s", team.id, device.id, device.status, founding)
        return JoinResponse(
            token=token,
            team_id=team.id,
            team_name=team.name,
            device_id=device.id,
            role=Role(device.role),
            status=DeviceStatus(device.status),
            founding=founding,
        )

    @app.post("/v1/recover", dependencies=[Depends(_protocol)], responses=_answers(*_ENROLL))
    def recover(body: RecoverRequest, request: Request) -> RecoverResponse:
        now, address = clock(), client_address(request)
        lookup = _decode(body.recovery_lookup, "recovery_lookup")
        public_key = _decode(body.public_key, "public_key", size=32)
        check_throttle(address, now)
        token = secrets.token_urlsafe(32)
        with db.transaction(write=True) as session:
            recovered = crud.recover_team(
                session,
                recovery_lookup_hash=crud.sha256_hex(lookup),
                device_id=body.device_id,
                name=body.device_name,
                public_key=public_key,
                token_hash=crud.sha256_hex(token),
                now=now,
            )
        if recovered is None:
            raise code_failed(address, now)
        team, device, keys = recovered
        log.info("recover team=%s device=%s epochs=%d", team.id, device.id, len(keys))
        return RecoverResponse(
            token=token,
            team_id=team.id,
            team_name=team.name,
            device_id=device.id,
            role=Role.COORDINATOR,
            recovery_keys=_wrapped(keys),
        )

    def stale(device: Caller, now: float) -> bool:
        return device.last_seen is None or now - device.last_seen >= settings.last_seen_resolution_seconds

    def seen(session: Session, device: Caller) -> None:
        """In a write transaction: note that the device was here (at most once per resolution)."""
        now = clock()
        if stale(device, now):
            crud.touch_device(session, device_id=device.id, now=now)

    def seen_after_read(device: Caller) -> None:
        """After a read transaction: the same, in a write transaction of its own, only when due."""
        now = clock()
        if stale(device, now):
            with db.transaction(write=True) as session:
                crud.touch_device(session, device_id=device.id, now=now)

    @app.get("/v1/me", response_model=MeResponse, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    def me(token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token, allow_pending=True)
            team = crud.get_team(session, team_id=device.team_id)
        seen_after_read(device)
        return _json(
            MeResponse(
                device_id=device.id,
                team_id=team.id,
                team_name=team.name,
                role=Role(device.role),
                status=DeviceStatus(device.status),
                current_epoch=team.current_epoch,
            )
        )

    @app.post("/v1/invites", response_model=InviteResponse, dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES))
    def invite(body: InviteRequest, token: Token) -> Response:
        now = clock()
        expires_at = now + body.expires_in_seconds
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            crud.create_invite(
                session,
                key=key,
                team_id=device.team_id,
                lookup=body.lookup,
                role=body.role,
                expires_at=expires_at,
                now=now,
            )
        log.info("invite team=%s by=%s role=%s", device.team_id, device.id, body.role.value)
        return _json(
            InviteResponse(lookup=body.lookup.strip().upper(), role=body.role, expires_at=expires_at)
        )

    @app.get("/v1/devices", response_model=DeviceList, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    def devices(token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token, coordinator=True)
            rows = crud.list_devices(session, team_id=device.team_id)
            team = crud.get_team(session, team_id=device.team_id)
            pending = crud.count_open_invites(session, team_id=device.team_id, now=clock())
        seen_after_read(device)
        return _json(
            DeviceList(
                devices=[
                    DevicePublic(
                        device_id=row.id,
                        name=row.name,
                        role=Role(row.role),
                        status=DeviceStatus(row.status),
                        public_key=b64e(row.public_key),
                        proof=b64e(row.proof or b""),
                        invite_lookup=row.invite_lookup,
                        joined_at=row.joined_at,
                        last_seen=row.last_seen,
                        key_epoch=epoch,
                        signing_key=b64e(row.signing_key) if row.signing_key else None,
                        announce=b64e(row.announce) if row.announce else None,
                    )
                    for row, epoch in rows
                ],
                current_epoch=team.current_epoch,
                invites_pending=pending,
            )
        )

    @app.post("/v1/devices/{device_id}/revoke", response_model=RevokeResponse, dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES, ErrorCode.NOT_FOUND))
    def revoke(device_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], token: Token) -> Response:
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            target = crud.revoke_device(
                session, team_id=device.team_id, device_id=device_id, caller_id=device.id
            )
            team = crud.get_team(session, team_id=device.team_id)
            changed(session, device.team_id)
        watch.notify(device.team_id)  # a long-poll of the revoked device ends with its wipe answer
        log.info("revoke team=%s device=%s by=%s", device.team_id, target.id, device.id)
        return _json(
            RevokeResponse(device_id=target.id, status=DeviceStatus.REVOKED, current_epoch=team.current_epoch)
        )

    @app.get("/v1/keys", response_model=KeysResponse, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    def get_keys(token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token, allow_pending=True)
            team = crud.get_team(session, team_id=device.team_id)
            rows = crud.keys_for_device(session, team_id=device.team_id, device_id=device.id)
        seen_after_read(device)
        return _json(KeysResponse(current_epoch=team.current_epoch, keys=_wrapped(rows)))

    @app.post("/v1/keys", response_model=KeysResponse, dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES, ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_EPOCH))
    def post_keys(body: KeysUpload, token: Token) -> Response:
        keys: list[tuple[str, int, bytes]] = []
        for index, key in enumerate(body.keys):
            assert key.device_id is not None  # `KeysUpload` refuses a key without its device
            keys.append((key.device_id, key.epoch, _decode(key.wrapped, f"keys.{index}.wrapped")))
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            team = crud.upload_keys(
                session, team_id=device.team_id, epoch=body.epoch, keys=keys, reject=body.reject, now=clock()
            )
            rows = crud.keys_for_device(session, team_id=device.team_id, device_id=device.id)
        log.info(
            "keys team=%s by=%s epoch=%d wrapped=%d rejected=%d",
            device.team_id,
            device.id,
            body.epoch,
            len(keys),
            len(body.reject),
        )
        return _json(KeysResponse(current_epoch=team.current_epoch, keys=_wrapped(rows)))

    @app.post("/v1/recovery", dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES, ErrorCode.UNKNOWN_EPOCH))
    def recovery(body: RecoveryUpload, token: Token) -> dict[str, object]:
        lookup = _decode(body.recovery_lookup, "recovery_lookup")
        keys = [(key.epoch, _decode(key.wrapped, f"keys.{i}.wrapped")) for i, key in enumerate(body.keys)]
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            crud.store_recovery(
                session, team_id=device.team_id, lookup_hash=crud.sha256_hex(lookup), keys=keys, now=clock()
            )
        log.info("recovery team=%s by=%s epochs=%d", device.team_id, device.id, len(keys))
        return {}

    @app.post(
        "/v1/push",
        response_model=PushResponse,
        dependencies=[Depends(_protocol)],
        responses=_answers(*_WRITES, ErrorCode.STALE_EPOCH, ErrorCode.UNKNOWN_EPOCH),
        # the body is validated by `PUSH_REQUEST` (below), `PushRequest`'s schema: `_openapi_document` adds it
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PushRequest"}}}}},
    )
    async def push(request: Request, token: Token) -> Response:
        # The body is validated by pydantic straight from its bytes: FastAPI's way (json.loads,
        # then validating the objects) took twice as long on a push of 500 ops. Same schema, same
        # 422 naming the field.
        return await run_in_threadpool(store_push, await request.body(), token)

    accounted: set[str] = set()  # devices whose sequence was checked against what the server holds

    def store_push(raw: bytes, token: str) -> Response:
        try:
            body = PUSH_REQUEST.validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_input=False, include_url=False)) from None
        ops: list[crud.PushOp] = []
        total = 0
        for index, op in enumerate(body["ops"]):
            payload = _decode(op["payload"], f"ops.{index}.payload")
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ApiError(
                    ErrorCode.TOO_LARGE,
                    f"One sealed op may hold at most {MAX_PAYLOAD_BYTES} bytes.",
                    {"field": f"ops.{index}.payload", "max_bytes": MAX_PAYLOAD_BYTES},
                )
            total += len(payload)
            ops.append(crud.PushOp(op["op_id"], op["device_seq"], op["record_id"], op["key_epoch"], payload))
        if total > MAX_PUSH_BYTES:
            raise ApiError(
                ErrorCode.TOO_LARGE,
                f"A push may hold at most {MAX_PUSH_BYTES} bytes of sealed payload: split it.",
                {"field": "ops", "max_bytes": MAX_PUSH_BYTES},
            )
        raw_sig, raw_sig2 = body.get("sig"), body.get("sig2")
        sig = _decode(raw_sig, "sig", size=64) if raw_sig else None
        sig2 = _decode(raw_sig2, "sig2", size=64) if raw_sig2 else None
        first = body.get("first")
        with db.transaction(write=True) as session:
            device = _authenticate(session, token)
            seen(session, device)
            if first is not None and device.id not in accounted:  # once per device and process
                accounted.add(device.id)
                held = held_through(session, team_id=device.team_id, device_id=device.id)
                if first > held + 1:
                    log.warning("push team=%s device=%s accounts from its sequence %d, the server holds it "
                                "through %d: acknowledged ops lost with a restore from an older backup? "
                                "(docs/DEPLOY.md, Restore)", device.team_id, device.id, first, held)
            result = crud.push_ops(
                session, team_id=device.team_id, device_id=device.id, ops=ops, now=clock(), sig=sig,
                first=first, sig2=sig2,
            )
            if result.accepted:
                changed(session, device.team_id)
        if result.accepted:
            watch.notify(device.team_id)
        log.info(
            "push team=%s device=%s ops=%d accepted=%d duplicates=%d purged=%d last_seq=%d",
            device.team_id,
            device.id,
            len(ops),
            result.accepted,
            result.duplicates,
            result.purged,
            result.last_seq,
        )
        return _json(
            PushResponse(
                acked_through=result.acked_through,
                accepted=result.accepted,
                duplicates=result.duplicates,
                purged=result.purged,
                last_seq=result.last_seq,
                purged_records=result.purged_records,
            )
        )

    behind: set[str] = set()  # devices whose place in the log is past its end (said once in the log)

    def read_page(token: str, since: int, limit: int) -> tuple[Caller, crud.PullPage]:
        # Authenticated again on every read: a device revoked during a long-poll is told to wipe.
        with db.transaction() as session:
            device = _authenticate(session, token)
            page = crud.pull_log(
                session, team_id=device.team_id, since=since, limit=limit, max_bytes=MAX_PULL_BYTES,
                device_id=device.id,
            )
            if since and not (page.ops or page.purges or page.batches) and device.id not in behind:
                end = log_end(session, team_id=device.team_id)
                if since > end:  # once per device and process: a long-poll asks again and again
                    behind.add(device.id)
                    log.warning("pull team=%s device=%s since=%d is past the log's end %d: the database "
                                "was restored from an older backup? (docs/DEPLOY.md, Restore)",
                                device.team_id, device.id, since, end)
        return device, page

    @app.get("/v1/pull", response_model=PullResponse, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    async def pull(
        request: Request,
        token: Token,
        since: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PULL_LIMIT)] = 1000,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
    ) -> Response:
        # Long-poll: sleep until a push or purge of the team wakes us (through this process, or on
        # PostgreSQL through any process: `PgListener`), and re-read the database now and then anyway.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        first = True
        while True:
            tick = watch.tick()
            device, page = await run_in_threadpool(read_page, token, since, limit)
            if first:
                first = False
                if stale(device, clock()):
                    await run_in_threadpool(seen_after_read, device)
            remaining = deadline - loop.time()
            if page.ops or page.purges or remaining <= 0:
                break
            await watch.wait(device.team_id, after=tick, timeout=min(recheck_seconds(), remaining))
        # Encoded and compressed in the thread pool, not on the event loop that serves the others.
        return await run_in_threadpool(_pull_response, page, _accepts_gzip(request.headers.get("accept-encoding", "")))

    @app.get("/v1/roster", response_model=RosterResponse, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    def get_roster(token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token)
            entries = crud.roster(session, team_id=device.team_id)
        seen_after_read(device)
        return _json(RosterResponse(entries=[RosterEntryOut(device_id=d, entry=b64e(e)) for d, e in entries]))

    @app.post("/v1/roster", dependencies=[Depends(_protocol)], responses=_answers(*_WRITES, ErrorCode.NOT_FOUND))
    def post_roster(body: RosterUpload, token: Token) -> dict[str, object]:
        entries = [(e.device_id, _decode(e.entry, f"entries.{i}.entry")) for i, e in enumerate(body.entries)]
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            crud.put_roster(session, team_id=device.team_id, entries=entries, now=clock())
        log.info("roster team=%s by=%s entries=%d", device.team_id, device.id, len(entries))
        return {}

    @app.post("/v1/signing-key", dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES, ErrorCode.NOT_FOUND))
    def signing_key(body: SigningKeyAnnounce, token: Token) -> dict[str, object]:
        key = _decode(body.signing_key, "signing_key", size=32)
        announce = body.announce.encode("ascii", errors="replace")
        with db.transaction(write=True) as session:
            device = _authenticate(session, token)
            seen(session, device)
            crud.announce_signing_key(session, device_id=device.id, signing_key=key, announce=announce)
        log.info("signing key team=%s device=%s", device.team_id, device.id)
        return {}

    @app.post("/v1/purge", response_model=PurgeResponse, dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES))
    def purge(body: PurgeRequest, token: Token) -> Response:
        signatures = (
            [_decode(sig, f"signatures.{i}", size=64) for i, sig in enumerate(body.signatures)]
            if body.signatures is not None
            else None
        )
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            deleted, last_seq = crud.purge_records(
                session, team_id=device.team_id, record_ids=body.record_ids, now=clock(), signatures=signatures
            )
            changed(session, device.team_id)
        watch.notify(device.team_id)
        log.info(
            "purge team=%s by=%s records=%d ops_deleted=%d",
            device.team_id,
            device.id,
            len(body.record_ids),
            deleted,
        )
        return _json(PurgeResponse(purged_ops=deleted, last_seq=last_seq))

    # Checkpoints (issue 17): sealed parts a coordinator puts, any device of the team fetches.
    @app.post("/v1/checkpoints", dependencies=[Depends(_protocol)],
              responses=_answers(*_WRITES, ErrorCode.STALE_EPOCH))
    def post_checkpoint(body: CheckpointIn, token: Token) -> dict[str, object]:
        manifest = _decode(body.manifest, "manifest")
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            crud.create_checkpoint(session, team_id=device.team_id, checkpoint_id=body.id, seq=body.seq,
                                   epoch=body.epoch, parts=body.parts, manifest=manifest, now=clock())
        log.info("checkpoint team=%s by=%s id=%s seq=%d parts=%d", device.team_id, device.id, body.id, body.seq,
                 body.parts)
        return {}

    @app.put("/v1/checkpoints/{checkpoint_id}/parts/{n}", response_model=CheckpointPartResponse,
             dependencies=[Depends(_protocol)], responses=_answers(*_WRITES, ErrorCode.NOT_FOUND))
    def put_checkpoint_part(checkpoint_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                            n: Annotated[int, Path(ge=1, le=MAX_CHECKPOINT_PARTS)],
                            body: CheckpointPartIn, token: Token) -> Response:
        blob = _decode(body.blob, "blob")
        with db.transaction(write=True) as session:
            device = _authenticate(session, token, coordinator=True)
            seen(session, device)
            complete = crud.put_checkpoint_part(session, team_id=device.team_id, checkpoint_id=checkpoint_id, n=n,
                                                blob=blob)
        return _json(CheckpointPartResponse(complete=complete))

    @app.get("/v1/checkpoints", response_model=CheckpointList, dependencies=[Depends(_protocol)],
             responses=_answers(*_AUTHENTICATED))
    def get_checkpoints(token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token)
            rows = crud.list_checkpoints(session, team_id=device.team_id)
            listing = CheckpointList(checkpoints=[
                CheckpointOut(id=r.id, seq=r.seq, epoch=r.epoch, parts=r.parts, size=r.size,
                              manifest=b64e(bytes(r.manifest))) for r in rows])
        seen_after_read(device)
        return _json(listing)

    @app.get("/v1/checkpoints/{checkpoint_id}/parts/{n}", response_class=Response,
             dependencies=[Depends(_protocol)],
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "the sealed part as it was stored (sealed: not compressed)"},
                        **_answers(*_AUTHENTICATED, ErrorCode.NOT_FOUND)})
    def get_checkpoint_part(checkpoint_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                            n: Annotated[int, Path(ge=1, le=MAX_CHECKPOINT_PARTS)], token: Token) -> Response:
        with db.transaction() as session:
            device = _authenticate(session, token)
            blob = crud.checkpoint_part(session, team_id=device.team_id, checkpoint_id=checkpoint_id, n=n)
        seen_after_read(device)
        # sealed bytes do not compress: the identity encoding keeps the gzip middleware off them
        return Response(blob, media_type="application/octet-stream", headers={"Content-Encoding": "identity"})

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
