"""The log: `POST /v1/push` and `GET /v1/pull` (a long-poll), the hot paths of the server.

It owns validating a push straight from its bytes (twice as fast as FastAPI's way, same schema
and 422), a long-poll woken through `sync.server.wake` (on PostgreSQL also by other processes),
pull pages encoded and gzipped off the event loop, and the continuity warnings after a restore
(`sync.server.continuity`). It must never read a payload as anything but opaque bytes, nor log
anything but ids and counts.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sync.protocol import (
    MAX_INT,
    MAX_PAYLOAD_BYTES,
    MAX_PULL_LIMIT,
    MAX_PUSH_BYTES,
    MAX_WAIT_SECONDS,
    NONCE_PATTERN,
    PUSH_REQUEST,
    ErrorCode,
    PullResponse,
    PushResponse,
    encode_pull,
)
from sync.server.continuity import held_through, log_end
from sync.server.crud import log as crud_log
from sync.server.errors import ApiError
from sync.server.routes.base import (
    AUTHENTICATED,
    WRITES,
    Caller,
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


MAX_PULL_BYTES = 4 * 1024 * 1024  # payload bytes in one pull page; `more` tells the client to go on
# A waiting long-poll re-reads the database this often (seconds) when nothing tells it of other
# processes' pushes (SQLite; PostgreSQL while the listening connection is lost), and this often as a
# mere safety net while `PgListener` hears them.
LONGPOLL_RECHECK_SECONDS = 2.0
LONGPOLL_SAFETY_SECONDS = 20.0

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


def _pull_response(page: crud_log.PullPage, gzip_ok: bool, nonce: str | None = None) -> Response:
    """A pull page as a finished response, echoing the request's `nonce` (1.3). Built without
    validation: every value came from the database, validated when pushed, and the nonce was
    validated as a query (`encode_pull` writes what `PullResponse` would)."""
    body = encode_pull(page.ops, page.purges, page.next, page.more, page.current_epoch, page.batches,
                       page.held_through, nonce)
    if gzip_ok and len(body) >= GZIP_MINIMUM:
        return Response(_pull_gzip.compress(body, PULL_GZIP_LEVEL, mtime=0), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(body, media_type="application/json")


def add_routes(routes: APIRouter, server: Server) -> None:
    """Add the routes of this area to `routes` (the app's own router), over one app's `Server`."""
    settings = server.settings
    db = server.db
    clock = server.clock
    watch = server.watch
    listener = server.listener
    seen = server.seen
    seen_after_read = server.seen_after_read
    changed = server.changed
    stale = server.stale

    def recheck_seconds() -> float:
        """How long a long-poll waits before it re-reads the database anyway: as configured, else
        a safety net while the listener hears other processes, else (SQLite, or the listening
        connection lost) often enough to see their pushes."""
        if settings.longpoll_recheck_seconds is not None:
            return settings.longpoll_recheck_seconds
        if listener is not None and listener.connected.is_set():
            return LONGPOLL_SAFETY_SECONDS
        return LONGPOLL_RECHECK_SECONDS

    @routes.post(
        "/v1/push",
        response_model=PushResponse,
        dependencies=[Depends(protocol)],
        responses=answers(*WRITES, ErrorCode.STALE_EPOCH, ErrorCode.UNKNOWN_EPOCH),
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
        ops: list[crud_log.PushOp] = []
        total = 0
        for index, op in enumerate(body["ops"]):
            payload = decode(op["payload"], f"ops.{index}.payload")
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ApiError(
                    ErrorCode.TOO_LARGE,
                    f"One sealed op may hold at most {MAX_PAYLOAD_BYTES} bytes.",
                    {"field": f"ops.{index}.payload", "max_bytes": MAX_PAYLOAD_BYTES},
                )
            total += len(payload)
            ops.append(crud_log.PushOp(op["op_id"], op["device_seq"], op["record_id"], op["key_epoch"], payload))
        if total > MAX_PUSH_BYTES:
            raise ApiError(
                ErrorCode.TOO_LARGE,
                f"A push may hold at most {MAX_PUSH_BYTES} bytes of sealed payload: split it.",
                {"field": "ops", "max_bytes": MAX_PUSH_BYTES},
            )
        raw_sig, raw_sig2 = body.get("sig"), body.get("sig2")
        sig = decode(raw_sig, "sig", size=64) if raw_sig else None
        sig2 = decode(raw_sig2, "sig2", size=64) if raw_sig2 else None
        first = body.get("first")
        with db.transaction(write=True) as session:
            device = authenticate(session, token)
            seen(session, device)
            if first is not None and device.id not in accounted:  # once per device and process
                accounted.add(device.id)
                held = held_through(session, team_id=device.team_id, device_id=device.id)
                if first > held + 1:
                    log.warning("push team=%s device=%s accounts from its sequence %d, the server holds it "
                                "through %d: acknowledged ops lost with a restore from an older backup? "
                                "(docs/DEPLOY.md, Restore)", device.team_id, device.id, first, held)
            result = crud_log.push_ops(
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
        return json_response(
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

    def read_page(token: str, since: int, limit: int) -> tuple[Caller, crud_log.PullPage]:
        # Authenticated again on every read: a device revoked during a long-poll is told to wipe.
        with db.transaction() as session:
            device = authenticate(session, token)
            page = crud_log.pull_log(
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

    @routes.get("/v1/pull", response_model=PullResponse, dependencies=[Depends(protocol)],
                responses=answers(*AUTHENTICATED))
    async def pull(
        request: Request,
        token: Token,
        since: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PULL_LIMIT)] = 1000,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
        nonce: Annotated[str | None, Query(min_length=22, max_length=22, pattern=NONCE_PATTERN)] = None,
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
        return await run_in_threadpool(_pull_response, page, _accepts_gzip(request.headers.get("accept-encoding", "")),
                                       nonce)
