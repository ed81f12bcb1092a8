"""The routes of the sync server, one module per area, each with `add_routes(routes, server)`
that `create_app` calls in this order on the app's own `APIRouter` (the OpenAPI document lists the
paths as they come; added there, not included as routers of their own, they stay the app's routes
as `app.routes` lists them, and a request is matched as before):

    health       GET /v1/health
    enrol        POST /v1/join, /v1/recover, GET /v1/me, POST /v1/invites
    devices      GET /v1/devices, POST /v1/devices/{id}/revoke, GET/POST /v1/keys, POST /v1/recovery
    log          POST /v1/push, GET /v1/pull (long-poll)
    roster       GET/POST /v1/roster, POST /v1/signing-key
    purge        POST /v1/purge
    checkpoints  POST/GET /v1/checkpoints, PUT/GET /v1/checkpoints/{id}/parts/{n}
    base         what every route shares: `Server`, authentication, the protocol header, decoding

Handlers decode the wire format into plain values, call the data functions of their area
(`sync.server.crud`) inside one transaction, and answer; they hold no SQL. They must never open a
sealed payload, nor log a body, a payload, a device name or a token.
"""

from collections.abc import Callable

from fastapi import APIRouter

from sync.server.routes import checkpoints, devices, enrol, health, log, purge, roster
from sync.server.routes.base import Server

__all__ = ["ROUTES", "Server"]

ROUTES: tuple[Callable[[APIRouter, Server], None], ...] = (
    health.add_routes,
    enrol.add_routes,
    devices.add_routes,
    log.add_routes,
    roster.add_routes,
    purge.add_routes,
    checkpoints.add_routes,
)
