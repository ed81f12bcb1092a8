"""`requests` transport adapters for tests: the sync server's FastAPI app in-process, and a wrapper
that injects network faults on a plan the test controls.

    app = create_app(ServerSettings(db_url=...))
    asgi = ASGIAdapter(app)                        # one event-loop thread until asgi.shutdown()
    faults = FaultyAdapter(asgi)
    session = asgi_session(faults)                 # mounted for http:// and https://
    client = SyncClient("http://127.0.0.1:8700", session=session)
    faults.schedule(Fault.DROP_RESPONSE, path="/v1/push")   # the next push is stored, its answer lost

`ASGIAdapter` hands each `requests.PreparedRequest` to the app through Starlette's `TestClient`
(httpx) exactly as sent: method, URL with query, headers (gzip `Content-Encoding` included) and the
raw body bytes. The answer becomes a `requests.Response` with status, headers and content. httpx
already decompressed a gzip answer, so `Content-Encoding` and the (compressed) `Content-Length`
are dropped; `wire_bytes` keeps the compressed size as sent by the server.

`FaultyAdapter` applies scheduled faults to the requests that match them, in order:
- `DROP_REQUEST`: the request never reaches the server; `requests.ConnectionError` is raised.
- `DROP_RESPONSE`: the server handles the request (and commits), then the connection breaks:
  `requests.ConnectionError`. The client cannot know whether the server acted.
- `DUPLICATE`: the request is delivered twice (a retransmission the client did not make); the
  second answer is returned.
And two a hostile server can do:
- `REPLAY`: the request never reaches the server; the client gets, as its answer, a copy of an
  answer the test chose (`schedule(..., answer=)`), e.g. an old pull page.
- `REORDER`: the request is delivered; every list at the top of the JSON answer (a pull's `ops`
  and `purges`, a key listing's `keys`...) comes in reverse order.
Every request (and what happened to it) is recorded in `log`.
"""

from __future__ import annotations

import io
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import requests
from fastapi.testclient import TestClient
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

__all__ = ["ASGIAdapter", "FaultyAdapter", "Fault", "Delivery", "asgi_session"]

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding"}
_DROPPED_ANSWER_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


class ASGIAdapter(BaseAdapter):
    """Forward each request to an ASGI app in-process, through one `TestClient`.

    The TestClient's event-loop thread (its "portal") is started once and kept until `shutdown()`:
    without it every request starts and stops a thread, several times slower. `close()`, which
    `requests.Session.close()` calls on every mounted adapter (and `SyncEngine` closes its client
    during `join`), keeps the adapter usable: one adapter may serve many sessions.
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        # raise_server_exceptions=False: an unhandled server error is a 500 answer, as over a socket
        self._client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        self._client.__enter__()  # runs the app's lifespan start and keeps the portal open
        self._open = True
        self.requests_sent = 0

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        raw: Any = request.body
        if isinstance(raw, str):
            body: bytes | None = raw.encode("utf-8")
        elif raw is None or isinstance(raw, bytes | bytearray):
            body = None if raw is None else bytes(raw)
        elif hasattr(raw, "read"):  # a file-like body
            data = raw.read()
            body = data.encode("utf-8") if isinstance(data, str) else data
        else:  # a generator of chunks
            body = b"".join(c.encode("utf-8") if isinstance(c, str) else c for c in raw)
        headers = {k: v for k, v in (request.headers or {}).items() if k.lower() not in _HOP_HEADERS}
        assert request.method is not None and request.url is not None
        self.requests_sent += 1
        answer = self._client.request(request.method, request.url, content=body, headers=headers)
        return self._response(request, answer)

    @staticmethod
    def _response(request: requests.PreparedRequest, answer: Any) -> requests.Response:
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp.reason = answer.reason_phrase
        resp.headers = CaseInsensitiveDict(
            {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED_ANSWER_HEADERS}
        )
        content = answer.content  # httpx decoded gzip already
        resp.headers["Content-Length"] = str(len(content))
        resp._content = content
        resp._content_consumed = True
        resp.raw = io.BytesIO(content)  # tell() is 0: SyncClient counts len(content) as received
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = answer.encoding
        resp.wire_bytes = int(answer.headers.get("content-length", len(content)))  # type: ignore[attr-defined]
        return resp

    def close(self) -> None:
        """Nothing to release per session; see `shutdown`."""

    def shutdown(self) -> None:
        """Stop the portal and run the app's lifespan end. Idempotent."""
        if self._open:
            self._open = False
            self._client.__exit__(None, None, None)


class Fault(Enum):
    DROP_REQUEST = "drop_request"
    DROP_RESPONSE = "drop_response"
    DUPLICATE = "duplicate"
    REPLAY = "replay"
    REORDER = "reorder"


@dataclass
class _Planned:
    fault: Fault
    path: str | None  # match requests whose path starts with this; None: any request
    skip: int  # let this many matching requests through first
    answer: requests.Response | None = None  # REPLAY: what the client gets instead


def _answer(request: requests.PreparedRequest, status: int, headers: Any, content: bytes) -> requests.Response:
    """A fresh `requests.Response` to `request` (a Response's body is read once; never hand one out twice)."""
    resp = requests.Response()
    resp.status_code = status
    resp.reason = "OK" if status == 200 else ""
    resp.headers = CaseInsensitiveDict(headers)
    resp.headers["Content-Length"] = str(len(content))
    resp._content = content
    resp._content_consumed = True
    resp.raw = io.BytesIO(content)
    resp.url = request.url or ""
    resp.request = request
    resp.encoding = "utf-8"
    resp.wire_bytes = len(content)  # type: ignore[attr-defined]
    return resp


def _reordered(request: requests.PreparedRequest, resp: requests.Response) -> requests.Response:
    """`resp` with every top-level list of its JSON object reversed (anything else as it was)."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        return resp
    if not isinstance(body, dict):
        return resp
    body = {k: v[::-1] if isinstance(v, list) else v for k, v in body.items()}
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return _answer(request, resp.status_code, resp.headers, content)


@dataclass(frozen=True)
class Delivery:
    method: str
    path: str
    fault: Fault | None
    status: int | None  # the answer the client got (None when it got an error)
    delivered: int  # how many times the server saw this request
    response: requests.Response | None = None  # the answer the server gave last (also when dropped)
    query: str = ""  # the URL's query string (a pull's `since`)


@dataclass
class FaultyAdapter(BaseAdapter):
    """Wrap an adapter and break requests on a plan. Unplanned requests pass through untouched."""

    inner: BaseAdapter
    plan: deque[_Planned] = field(default_factory=deque)
    log: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # a pull fetches pages in threads

    def __post_init__(self) -> None:
        super().__init__()

    def schedule(self, fault: Fault, *, path: str | None = None, skip: int = 0,
                 answer: requests.Response | None = None) -> None:
        """Break the (skip+1)-th next request whose path starts with `path` (any when None).
        Faults are matched in the order scheduled; each fires once. `REPLAY` needs `answer`."""
        if (fault is Fault.REPLAY) != (answer is not None):
            raise ValueError("an answer goes with REPLAY, and only with it")
        with self._lock:
            self.plan.append(_Planned(fault, path, skip, answer))

    def clear(self) -> None:
        with self._lock:
            self.plan.clear()

    @property
    def pending(self) -> int:
        return len(self.plan)

    def _take(self, path: str) -> _Planned | None:
        with self._lock:
            for planned in self.plan:
                if planned.path is None or path.startswith(planned.path):
                    if planned.skip > 0:
                        planned.skip -= 1
                        return None
                    self.plan.remove(planned)
                    return planned
            return None

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        path, query = url.path, url.query
        method = request.method or "?"
        planned = self._take(path)
        fault = planned.fault if planned is not None else None
        kwargs = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert, "proxies": proxies}
        if planned is not None and planned.answer is not None:  # REPLAY
            old = planned.answer
            resp = _answer(request, old.status_code, old.headers, old.content)
            self.log.append(Delivery(method, path, fault, resp.status_code, 0, resp, query))
            return resp
        if fault is Fault.DROP_REQUEST:
            self.log.append(Delivery(method, path, fault, None, 0, query=query))
            raise requests.ConnectionError(f"injected: {method} {path} lost on the way to the server",
                                           request=request)
        resp = self.inner.send(request, **kwargs)
        if fault is Fault.DROP_RESPONSE:
            self.log.append(Delivery(method, path, fault, None, 1, resp, query))
            raise requests.ConnectionError(f"injected: the answer to {method} {path} was lost", request=request)
        if fault is Fault.DUPLICATE:
            resp = self.inner.send(request, **kwargs)
            self.log.append(Delivery(method, path, fault, resp.status_code, 2, resp, query))
            return resp
        if fault is Fault.REORDER:
            resp = _reordered(request, resp)
        self.log.append(Delivery(method, path, fault, resp.status_code, 1, resp, query))
        return resp

    def close(self) -> None:
        self.inner.close()


def asgi_session(adapter: BaseAdapter) -> requests.Session:
    """A `requests.Session` that sends every http:// and https:// request through `adapter`.
    It ignores proxy variables of the environment (`trust_env`): nothing here leaves the process."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
