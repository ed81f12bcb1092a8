"""Checkpoints (issue 17): `POST /v1/checkpoints` and `PUT .../parts/{n}` (a coordinator's),
`GET /v1/checkpoints` and `GET .../parts/{n}` (any device of the team). Sealed parts, kept blind:
it must never look inside a part or the manifest, nor compress a part (sealed bytes do not).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from sync.protocol import (
    MAX_CHECKPOINT_PARTS,
    CheckpointIn,
    CheckpointList,
    CheckpointOut,
    CheckpointPartIn,
    CheckpointPartResponse,
    ErrorCode,
    b64e,
)
from sync.server.crud import checkpoints as crud_checkpoints
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

    @routes.post("/v1/checkpoints", dependencies=[Depends(protocol)],
                 responses=answers(*WRITES, ErrorCode.STALE_EPOCH))
    def post_checkpoint(body: CheckpointIn, token: Token) -> dict[str, object]:
        manifest = decode(body.manifest, "manifest")
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            crud_checkpoints.create_checkpoint(session, team_id=device.team_id, checkpoint_id=body.id, seq=body.seq,
                                   epoch=body.epoch, parts=body.parts, manifest=manifest, now=clock())
        log.info("checkpoint team=%s by=%s id=%s seq=%d parts=%d", device.team_id, device.id, body.id, body.seq,
                 body.parts)
        return {}

    @routes.put("/v1/checkpoints/{checkpoint_id}/parts/{n}", response_model=CheckpointPartResponse,
                dependencies=[Depends(protocol)], responses=answers(*WRITES, ErrorCode.NOT_FOUND))
    def put_checkpoint_part(checkpoint_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                            n: Annotated[int, Path(ge=1, le=MAX_CHECKPOINT_PARTS)],
                            body: CheckpointPartIn, token: Token) -> Response:
        blob = decode(body.blob, "blob")
        with db.transaction(write=True) as session:
            device = authenticate(session, token, coordinator=True)
            seen(session, device)
            complete = crud_checkpoints.put_checkpoint_part(session, team_id=device.team_id, checkpoint_id=checkpoint_id, n=n,
                                                blob=blob)
        return json_response(CheckpointPartResponse(complete=complete))

    @routes.get("/v1/checkpoints", response_model=CheckpointList, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    def get_checkpoints(token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token)
            rows = crud_checkpoints.list_checkpoints(session, team_id=device.team_id)
            listing = CheckpointList(checkpoints=[
                CheckpointOut(id=r.id, seq=r.seq, epoch=r.epoch, parts=r.parts, size=r.size,
                              manifest=b64e(bytes(r.manifest))) for r in rows])
        seen_after_read(device)
        return json_response(listing)

    @routes.get("/v1/checkpoints/{checkpoint_id}/parts/{n}", response_class=Response,
                dependencies=[Depends(protocol)],
                responses={200: {"content": {"application/octet-stream": {}},
                                 "description": "the sealed part as it was stored (sealed: not compressed)"},
                           **answers(*AUTHENTICATED, ErrorCode.NOT_FOUND)})
    def get_checkpoint_part(checkpoint_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                            n: Annotated[int, Path(ge=1, le=MAX_CHECKPOINT_PARTS)], token: Token) -> Response:
        with db.transaction() as session:
            device = authenticate(session, token)
            blob = crud_checkpoints.checkpoint_part(session, team_id=device.team_id, checkpoint_id=checkpoint_id, n=n)
        seen_after_read(device)
        # sealed bytes do not compress: the identity encoding keeps the gzip middleware off them
        return Response(blob, media_type="application/octet-stream", headers={"Content-Encoding": "identity"})
