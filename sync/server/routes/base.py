"""What every route of the sync server shares: the server's context, authentication by bearer
token, the `Outreach-Protocol` header, decoding wire values, and the error answers each route
names in the OpenAPI document.

It owns `Server` (settings, database, clock, wake-ups and the server key of one app, with the
small steps every handler takes: note that a device was here, tell other processes that a team's
log changed), `authenticate` (who may call what: pending devices only `/v1/me` and `GET
/v1/keys`, revoked devices nowhere, with ``detail.wipe``) and the finished JSON response. Only
SHA-256 hashes of tokens are looked up. It must never hold a route, open a transaction of its own
beyond noting a device's visit, or log a token.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlmodel import Session
from starlette.responses import Response

from sync.protocol import (
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SUPPORTED_MAJORS,
    DeviceStatus,
    ErrorCode,
    ErrorResponse,
    Role,
    WrappedKey,
    b64d,
    b64e,
)
from sync.server.config import ServerSettings
from sync.server.crud import devices as crud_devices
from sync.server.crud import roster as crud_roster
from sync.server.crud.base import sha256_hex
from sync.server.db import Database, has_teams
from sync.server.errors import STATUS, ApiError, EmptyDatabase
from sync.server.keys import ServerKey
from sync.server.tables import WrappedKeyRow
from sync.server.wake import LogWatch, PgListener, announce

__all__ = [
    "Server",
    "Caller",
    "Token",
    "AUTHENTICATED",
    "WRITES",
    "ENROLL",
    "authenticate",
    "answers",
    "decode",
    "json_response",
    "protocol",
    "protocol_optional",
    "throttle_address",
    "wrapped",
]


@dataclass(frozen=True)
class Caller:
    """The authenticated device of a request, as plain values."""

    id: str
    team_id: str
    role: str
    status: str
    last_seen: float | None


@dataclass(frozen=True)
class Server:
    """One app's settings, database, clock, wake-ups and server key, as its routes use them."""

    settings: ServerSettings
    db: Database
    clock: Callable[[], float]
    watch: LogWatch
    server_key: ServerKey
    listener: PgListener | None
    origin: str = ""  # names this process's NOTIFYs, which its own listener skips
    postgres: bool = field(default=False)

    def changed(self, session: Session, team_id: str) -> None:
        """In the writing transaction: other processes' long-polls of the team wake at its commit."""
        if self.postgres:
            announce(session, team_id=team_id, origin=self.origin)

    def stale(self, device: Caller, now: float) -> bool:
        return device.last_seen is None or now - device.last_seen >= self.settings.last_seen_resolution_seconds

    def seen(self, session: Session, device: Caller) -> None:
        """In a write transaction: note that the device was here (at most once per resolution)."""
        now = self.clock()
        if self.stale(device, now):
            crud_devices.touch_device(session, device_id=device.id, now=now)

    def seen_after_read(self, device: Caller) -> None:
        """After a read transaction: the same, in a write transaction of its own, only when due."""
        now = self.clock()
        if self.stale(device, now):
            with self.db.transaction(write=True) as session:
                crud_devices.touch_device(session, device_id=device.id, now=now)


def decode(value: str, field: str, *, size: int | None = None) -> bytes:
    try:
        data = b64d(value)
    except ValueError:
        raise ApiError(ErrorCode.MALFORMED, f"{field}: not valid base64.", {"field": field}) from None
    if size is not None and len(data) != size:
        raise ApiError(ErrorCode.MALFORMED, f"{field}: must be {size} bytes.", {"field": field})
    return data


def wrapped(rows: Sequence[WrappedKeyRow]) -> list[WrappedKey]:
    return [WrappedKey(epoch=row.epoch, device_id=row.device_id, wrapped=b64e(row.blob)) for row in rows]


def json_response(model: BaseModel) -> Response:
    """The model as a finished response: FastAPI neither validates it again nor serializes it twice."""
    return Response(model.model_dump_json(), media_type="application/json")


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


# --- authentication ---------------------------------------------------------------------------

_BEARER = HTTPBearer(auto_error=False, description="The device token from `/v1/join` or `/v1/recover`.")


class _TokenHash(str):
    """The SHA-256 hex of a bearer token, knowing whether the token had the shape of the tokens
    this server hands out (43 characters of URL-safe base64): an unknown one of that shape comes
    from a device of some team."""

    well_formed: bool = False


_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


async def _bearer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> str:
    """The SHA-256 hex of the request's bearer token; the device is looked up inside the handler's
    own transaction (`authenticate`), so a request costs one transaction, not two."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "Send Authorization: Bearer <device token>.")
    token_hash = _TokenHash(sha256_hex(token))
    token_hash.well_formed = _TOKEN_SHAPE.fullmatch(token) is not None
    return token_hash


Token = Annotated[str, Depends(_bearer)]


def authenticate(
    session: Session, token_hash: str, *, allow_pending: bool = False, coordinator: bool = False
) -> Caller:
    """The device holding the token, if it may make this call. Pending (and rejected) devices only
    with ``allow_pending`` (`/v1/me`, `GET /v1/keys`), revoked devices never (with ``detail.wipe``)."""
    row = crud_devices.device_by_token(session, token_hash=token_hash)
    if row is None:
        if getattr(token_hash, "well_formed", False) and not has_teams(session):
            raise EmptyDatabase()  # a server started on a new, empty database: not the device's fault
        raise ApiError(ErrorCode.UNAUTHENTICATED, "Unknown device token.")
    device = Caller(*row)
    if device.status == DeviceStatus.REVOKED:
        # the coordinator's signed word, for the device to check before it erases anything
        entry = crud_roster.roster_entry(session, team_id=device.team_id, device_id=device.id)
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


# --- the protocol header ----------------------------------------------------------------------

# `Outreach-Protocol`, as the OpenAPI document states it. `ProtocolGate` answers an unknown major
# (400) before any route; this pattern holds the rest to `<major>.<minor>` (422 naming the header),
# so that the server takes exactly what the document admits.
_VERSION_PATTERN = "^(" + "|".join(str(major) for major in SUPPORTED_MAJORS) + r")\.(0|[1-9][0-9]{0,5})$"


async def protocol(
    version: Annotated[str, Header(alias=PROTOCOL_HEADER, pattern=_VERSION_PATTERN, examples=[PROTOCOL_VERSION])],
) -> None:
    return None


async def protocol_optional(
    version: Annotated[
        str | None, Header(alias=PROTOCOL_HEADER, pattern=_VERSION_PATTERN, examples=[PROTOCOL_VERSION])
    ] = None,
) -> None:
    return None


# --- error answers, for the OpenAPI document --------------------------------------------------


def answers(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
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


AUTHENTICATED = (ErrorCode.UNAUTHENTICATED, ErrorCode.DEVICE_REVOKED, ErrorCode.DEVICE_PENDING,
                 ErrorCode.FORBIDDEN)
WRITES = (*AUTHENTICATED, ErrorCode.CONFLICT)  # a concurrent write may conflict (409 conflict)
ENROLL = (ErrorCode.CODE_INVALID, ErrorCode.THROTTLED, ErrorCode.CONFLICT)
