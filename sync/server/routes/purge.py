"""`POST /v1/purge`: a coordinator erases records; the log keeps one signed purge entry each, and
the team's long-polls wake. It must never log a record's content (there is none here: ids only).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from sync.protocol import (
    PurgeRequest,
    PurgeResponse,
)
from sync.server.crud import purge as crud_purge
from sync.server.routes.base import (
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
    watch = server.watch
    seen = server.seen
    changed = server.changed

    @routes.post("/v1/purge", response_model=PurgeResponse, dependencies=[Depends(protocol)],
                 responses=answers(*WRITES))
    def purge(body: PurgeRequest, token: Token) -> Response:
        signatures = (
            [decode(sig, f"signatures.{i}", size=64) for i, sig in enumerate(body.signatures)]
            if body.signatures is not None
            else None
        )
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            deleted, last_seq = crud_purge.purge_records(
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
        return json_response(PurgeResponse(purged_ops=deleted, last_seq=last_seq))
