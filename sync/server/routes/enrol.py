"""Teams and enrolment: `POST /v1/join` and `/v1/recover` (with a one-time code, throttled per
address and per server), `GET /v1/me` (a device asks its own state: pending devices may) and
`POST /v1/invites` (a coordinator's new code: only its lookup reaches the server).

It owns the throttle of code lookups as the client sees it (`Retry-After`, the scope). It must
never log a code, a token or a device name, and hands out a token only at a join or recovery.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sync.protocol import (
    DeviceStatus,
    ErrorCode,
    InviteRequest,
    InviteResponse,
    JoinRequest,
    JoinResponse,
    MeResponse,
    RecoverRequest,
    RecoverResponse,
    Role,
)
from sync.server.crud import teams as crud_teams
from sync.server.crud import throttle as crud_throttle
from sync.server.crud.base import sha256_hex
from sync.server.errors import ApiError
from sync.server.routes.base import (
    AUTHENTICATED,
    ENROLL,
    WRITES,
    Server,
    Token,
    answers,
    authenticate,
    decode,
    json_response,
    protocol,
    throttle_address,
    wrapped,
)

__all__ = ["add_routes"]

log = logging.getLogger("outreach.server")


def add_routes(routes: APIRouter, server: Server) -> None:
    """Add the routes of this area to `routes` (the app's own router), over one app's `Server`."""
    settings = server.settings
    db = server.db
    clock = server.clock
    key = server.server_key
    seen = server.seen
    seen_after_read = server.seen_after_read

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
            retry_after = crud_throttle.throttle_retry_after(
                session,
                address=address,
                now=now,
                limit=settings.throttle_failures,
                window=settings.throttle_window_seconds,
            )
            server_wide = None if retry_after is not None else crud_throttle.server_throttle_retry_after(
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
            crud_throttle.record_failure(session, address=address, now=now, window=settings.throttle_window_seconds)
        return ApiError(ErrorCode.CODE_INVALID, "This code is unknown, used or expired.")

    @routes.post("/v1/join", dependencies=[Depends(protocol)], responses=answers(*ENROLL))
    def join(body: JoinRequest, request: Request) -> JoinResponse:
        now, address = clock(), client_address(request)
        public_key = decode(body.public_key, "public_key", size=32)
        proof = decode(body.proof, "proof")
        signing_key = decode(body.signing_key, "signing_key", size=32) if body.signing_key else None
        check_throttle(address, now)
        token = secrets.token_urlsafe(32)
        with db.transaction(write=True) as session:
            joined = crud_teams.join_team(
                session,
                key=key,
                lookup=body.lookup,
                device_id=body.device_id,
                name=body.device_name,
                public_key=public_key,
                proof=proof,
                token_hash=sha256_hex(token),
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

    @routes.post("/v1/recover", dependencies=[Depends(protocol)], responses=answers(*ENROLL))
    def recover(body: RecoverRequest, request: Request) -> RecoverResponse:
        now, address = clock(), client_address(request)
        lookup = decode(body.recovery_lookup, "recovery_lookup")
        public_key = decode(body.public_key, "public_key", size=32)
        check_throttle(address, now)
        token = secrets.token_urlsafe(32)
        with db.transaction(write=True) as session:
            recovered = crud_teams.recover_team(
                session,
                recovery_lookup_hash=sha256_hex(lookup),
                device_id=body.device_id,
                name=body.device_name,
                public_key=public_key,
                token_hash=sha256_hex(token),
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
            recovery_keys=wrapped(keys),
        )

    @routes.get("/v1/me", response_model=MeResponse, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    def me(token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token, allow_pending=True)
            team = crud_teams.get_team(session, team_id=device.team_id)
        seen_after_read(device)
        return json_response(
            MeResponse(
                device_id=device.id,
                team_id=team.id,
                team_name=team.name,
                role=Role(device.role),
                status=DeviceStatus(device.status),
                current_epoch=team.current_epoch,
            )
        )

    @routes.post("/v1/invites", response_model=InviteResponse, dependencies=[Depends(protocol)],
                 responses=answers(*WRITES))
    def invite(body: InviteRequest, token: Token) -> Response:
        now = clock()
        expires_at = now + body.expires_in_seconds
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            crud_teams.create_invite(
                session,
                key=key,
                team_id=device.team_id,
                lookup=body.lookup,
                role=body.role,
                expires_at=expires_at,
                now=now,
            )
        log.info("invite team=%s by=%s role=%s", device.team_id, device.id, body.role.value)
        return json_response(
            InviteResponse(lookup=body.lookup.strip().upper(), role=body.role, expires_at=expires_at)
        )
