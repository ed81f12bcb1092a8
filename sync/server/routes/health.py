"""`GET /v1/health`: is the server there, and can it reach its database? No token, the protocol
header optional (probes and tools). It must never say more than the database's kind.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from sync.protocol import (
    HealthResponse,
)
from sync.server.crud.base import ping
from sync.server.routes.base import (
    Server,
    answers,
    json_response,
    protocol_optional,
)

__all__ = ["add_routes"]


def add_routes(routes: APIRouter, server: Server) -> None:
    """Add the routes of this area to `routes` (the app's own router), over one app's `Server`."""
    db = server.db

    @routes.get("/v1/health", response_model=HealthResponse, dependencies=[Depends(protocol_optional)],
                responses=answers())
    def health() -> Response:
        with db.transaction() as session:
            ping(session)
        return json_response(HealthResponse(database=db.dialect))
