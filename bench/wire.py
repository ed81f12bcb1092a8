"""Bytes on the wire, counted on the client's `requests` session (what `SyncEngine(session=...)`
takes): request line and headers as sent, the body as sent (gzip when the client compressed it),
status line and headers as received, and the response body as read from the socket (before
gzip is undone: urllib3's `tell()`). Not counted: TCP/IP framing, the Host header that http.client
adds (about 22 bytes), chunk framing. Every request is also logged (method, bytes up, bytes down),
so that the transfer limit can replay exactly the same sequence of sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["CountingSession", "Exchange"]


@dataclass
class Exchange:
    method: str
    up: int
    down: int
    body_up: int
    body_down: int


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[Exchange] = []
        self.recording = True

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        resp = super().send(request, **kwargs)
        if self.recording:
            body = request.body or b""
            body_up = len(body) if isinstance(body, (bytes, bytearray)) else len(str(body).encode())
            head_up = len(f"{request.method} {request.path_url} HTTP/1.1\r\n") + sum(
                len(k) + len(v) + 4 for k, v in request.headers.items()) + 2
            raw = resp.raw
            body_down = raw.tell() if hasattr(raw, "tell") else len(resp.content)
            headers = getattr(raw, "headers", resp.headers)
            head_down = len(f"HTTP/1.1 {resp.status_code} {resp.reason}\r\n") + sum(
                len(k) + len(v) + 4 for k, v in headers.items()) + 2
            self.log.append(Exchange(str(request.method), head_up + body_up, head_down + body_down, body_up,
                                     body_down))
        return resp

    def totals(self) -> tuple[int, int, int]:
        """(requests, bytes up, bytes down)."""
        return len(self.log), sum(e.up for e in self.log), sum(e.down for e in self.log)

    def reset(self) -> None:
        self.log = []
