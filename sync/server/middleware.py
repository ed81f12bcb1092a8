"""The gate every HTTP request passes before a route: protocol version, body size, request gzip.

It owns three refusals in the protocol's error shape: an unknown or missing protocol major
(400 ``unsupported_protocol``; a missing header is allowed only on ``GET /v1/health`` and on
``GET /v1/openapi.json``), a body over
the limit (413 ``too_large``, by Content-Length and by counting the bytes that actually arrive,
and again after gzip decompression) and an unreadable gzip body (422 ``malformed``). It is plain
ASGI so that long-polls and streamed responses pass untouched. It must never log or keep a body.
"""

from __future__ import annotations

import zlib
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.protocol import PROTOCOL_HEADER, SUPPORTED_MAJORS, ErrorCode, parse_protocol_header
from sync.server.errors import ApiError

__all__ = ["ProtocolGate"]

_BARE_GETS = ("/v1/health", "/v1/openapi.json")  # may come without the header: probes and tools


class ProtocolGate:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self._check_protocol(scope, headers)
            body = await self._read_body(headers, receive)
            if body is None:  # the client went away
                return
            body, scope = self._decode(scope, headers, body)
        except ApiError as error:
            await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_protocol(self, scope: Scope, headers: Headers) -> None:
        raw = headers.get(PROTOCOL_HEADER)
        if raw is None and scope["method"] == "GET" and scope["path"] in _BARE_GETS:
            return
        version = parse_protocol_header(raw)
        if version is None or version[0] not in SUPPORTED_MAJORS:
            raise ApiError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"Send the header {PROTOCOL_HEADER} with a supported major version.",
                {"supported_majors": list(SUPPORTED_MAJORS), "received": raw},
            )

    def _too_large(self) -> ApiError:
        return ApiError(
            ErrorCode.TOO_LARGE,
            f"The request body is over {self.max_body_bytes} bytes.",
            {"max_bytes": self.max_body_bytes},
        )

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise ApiError(
                    ErrorCode.MALFORMED, "Bad Content-Length.", {"field": "Content-Length"}
                ) from None
            if declared > self.max_body_bytes:
                raise self._too_large()
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _decode(self, scope: Scope, headers: Headers, body: bytes) -> tuple[bytes, Scope]:
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding == "identity":
            return body, scope
        if encoding != "gzip":
            raise ApiError(
                ErrorCode.MALFORMED,
                "Request bodies may be sent as gzip or plain.",
                {"field": "Content-Encoding"},
            )
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error:
            raise ApiError(ErrorCode.MALFORMED, "The gzip body is damaged.", {"field": "body"}) from None
        if len(plain) > self.max_body_bytes:
            raise self._too_large()
        if not inflater.eof or inflater.unused_data:
            raise ApiError(ErrorCode.MALFORMED, "The gzip body is damaged.", {"field": "body"})
        kept: list[Any] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-encoding", b"content-length")
        ]
        kept.append((b"content-length", str(len(plain)).encode("ascii")))
        return plain, {**scope, "headers": kept}
