"""Devices and keys: `GET /v1/devices` and `POST /v1/devices/{device_id}/revoke` (a
coordinator's), `GET`/`POST /v1/keys` (wrapped team keys: a pending device may fetch its own) and
`POST /v1/recovery` (the team keys wrapped under the recovery code). The keys are opaque bytes
here: it must never look inside one.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from sync.protocol import (
    DeviceList,
    DevicePublic,
    DeviceStatus,
    ErrorCode,
    KeysResponse,
    KeysUpload,
    RecoveryUpload,
    RevokeResponse,
    Role,
    b64e,
)
from sync.server.crud import devices as crud_devices
from sync.server.crud import keys as crud_keys
from sync.server.crud import teams as crud_teams
from sync.server.crud.base import sha256_hex
from sync.server.routes.base import (
    AUTHENTICATED,
    WRITES,
    Server,
    Token,
    answers,
    authenticate,
    decode,
    json_response,
    protocol,
    wrapped,
)

__all__ = ["add_routes"]

log = logging.getLogger("outreach.server")


def add_routes(routes: APIRouter, server: Server) -> None:
    """Add the routes of this area to `routes` (the app's own router), over one app's `Server`."""
    db = server.db
    clock = server.clock
    watch = server.watch
    seen = server.seen
    seen_after_read = server.seen_after_read
    changed = server.changed

    @routes.get("/v1/devices", response_model=DeviceList, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    def devices(token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token, coordinator=True)
            rows = crud_devices.list_devices(session, team_id=device.team_id)
            team = crud_teams.get_team(session, team_id=device.team_id)
            pending = crud_teams.count_open_invites(session, team_id=device.team_id, now=clock())
        seen_after_read(device)
        return json_response(
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

    @routes.post("/v1/devices/{device_id}/revoke", response_model=RevokeResponse, dependencies=[Depends(protocol)],
                 responses=answers(*WRITES, ErrorCode.NOT_FOUND))
    def revoke(device_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], token: Token) -> Response:
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            target = crud_devices.revoke_device(
                session, team_id=device.team_id, device_id=device_id, caller_id=device.id
            )
            team = crud_teams.get_team(session, team_id=device.team_id)
            changed(session, device.team_id)
        watch.notify(device.team_id)  # a long-poll of the revoked device ends with its wipe answer
        log.info("revoke team=%s device=%s by=%s", device.team_id, target.id, device.id)
        return json_response(
            RevokeResponse(device_id=target.id, status=DeviceStatus.REVOKED, current_epoch=team.current_epoch)
        )

    @routes.get("/v1/keys", response_model=KeysResponse, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    def get_keys(token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token, allow_pending=True)
            team = crud_teams.get_team(session, team_id=device.team_id)
            rows = crud_keys.keys_for_device(session, team_id=device.team_id, device_id=device.id)
        seen_after_read(device)
        return json_response(KeysResponse(current_epoch=team.current_epoch, keys=wrapped(rows)))

    @routes.post("/v1/keys", response_model=KeysResponse, dependencies=[Depends(protocol)],
                 responses=answers(*WRITES, ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_EPOCH))
    def post_keys(body: KeysUpload, token: Token) -> Response:
        keys: list[tuple[str, int, bytes]] = []
        for index, key in enumerate(body.keys):
            assert key.device_id is not None  # `KeysUpload` refuses a key without its device
            keys.append((key.device_id, key.epoch, decode(key.wrapped, f"keys.{index}.wrapped")))
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            team = crud_keys.upload_keys(
                session, team_id=device.team_id, epoch=body.epoch, keys=keys, reject=body.reject, now=clock()
            )
            rows = crud_keys.keys_for_device(session, team_id=device.team_id, device_id=device.id)
        log.info(
            "keys team=%s by=%s epoch=%d wrapped=%d rejected=%d",
            device.team_id,
            device.id,
            body.epoch,
            len(keys),
            len(body.reject),
        )
        return json_response(KeysResponse(current_epoch=team.current_epoch, keys=wrapped(rows)))

    @routes.post("/v1/recovery", dependencies=[Depends(protocol)],
                 responses=answers(*WRITES, ErrorCode.UNKNOWN_EPOCH))
    def recovery(body: RecoveryUpload, token: Token) -> dict[str, object]:
        lookup = decode(body.recovery_lookup, "recovery_lookup")
        keys = [(key.epoch, decode(key.wrapped, f"keys.{i}.wrapped")) for i, key in enumerate(body.keys)]
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            crud_keys.store_recovery(
                session, team_id=device.team_id, lookup_hash=sha256_hex(lookup), keys=keys, now=clock()
            )
        log.info("recovery team=%s by=%s epochs=%d", device.team_id, device.id, len(keys))
        return {}
