"""The roster: `GET`/`POST /v1/roster` (the coordinator's signed entries of the team's devices,
kept as they are) and `POST /v1/signing-key` (a device of the previous version announces its new
signing key). It must never look inside an entry: the devices check the coordinator's signature.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from sync.protocol import (
    ErrorCode,
    RosterEntryOut,
    RosterResponse,
    RosterUpload,
    SigningKeyAnnounce,
    b64e,
)
from sync.server.crud import roster as crud_roster
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
)

__all__ = ["add_routes"]

log = logging.getLogger("outreach.server")


def add_routes(routes: APIRouter, server: Server) -> None:
    """Add the routes of this area to `routes` (the app's own router), over one app's `Server`."""
    db = server.db
    clock = server.clock
    seen = server.seen
    seen_after_read = server.seen_after_read

    @routes.get("/v1/roster", response_model=RosterResponse, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    def get_roster(token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token)
            entries = crud_roster.roster(session, team_id=device.team_id)
        seen_after_read(device)
        return json_response(RosterResponse(entries=[RosterEntryOut(device_id=d, entry=b64e(e)) for d, e in entries]))

    @routes.post("/v1/roster", dependencies=[Depends(protocol)], responses=answers(*WRITES, ErrorCode.NOT_FOUND))
    def post_roster(body: RosterUpload, token: Token) -> dict[str, object]:
        entries = [(e.device_id, decode(e.entry, f"entries.{i}.entry")) for i, e in enumerate(body.entries)]
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            crud_roster.put_roster(session, team_id=device.team_id, entries=entries, now=clock())
        log.info("roster team=%s by=%s entries=%d", device.team_id, device.id, len(entries))
        return {}

    @routes.post("/v1/signing-key", dependencies=[Depends(protocol)],
                 responses=answers(*WRITES, ErrorCode.NOT_FOUND))
    def signing_key(body: SigningKeyAnnounce, token: Token) -> dict[str, object]:
        key = decode(body.signing_key, "signing_key", size=32)
        announce = body.announce.encode("ascii", errors="replace")
        with db.transaction(write=True) as session:
            device = authenticate(session, token)
            seen(session, device)
            crud_roster.announce_signing_key(session, device_id=device.id, signing_key=key, announce=announce)
        log.info("signing key team=%s device=%s", device.team_id, device.id)
        return {}
