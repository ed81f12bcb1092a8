"""Web mode answers only its own page. `WebGate` wraps Flet's ASGI app (which accepts a websocket
from every origin and sends `Access-Control-Allow-Origin: *`) and lets through only:

- requests whose `Host` is the address the app printed (a DNS-rebinding page names its own host);
- requests that carry this launch's key: once in the printed address (`/?key=...`), which answers
  with a cookie (HttpOnly, SameSite=Strict) and a redirect to the same address without the key,
  then as that cookie;
- websockets whose `Origin` is exactly the app's own origin (a page of another origin, another port
  of loopback included, or a client that sends none, is refused before the upgrade), with the cookie.

Everything else gets 403 before Flet sees it, so no session (and no first-run screen with the team's
founding code) ever starts without the key. Flet's wildcard CORS header is taken off every answer.

`serve_web` runs a Flet `main` behind the gate with uvicorn on a socket bound before the address is
printed (so whoever reads the address can connect at once), on loopback unless told otherwise.
`ft.run(view=WEB_BROWSER)` is never used: it serves Flet's app without the gate, on whatever
`FLET_SERVER_IP` says. This module holds no data and knows nothing of the screens.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["WebGate", "serve_web", "flet_would_serve_web", "listening_socket", "new_key", "url_host", "is_loopback", "KEY_PARAM",
           "LOOPBACK"]

log = logging.getLogger("outreach.app.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEY_PARAM = "key"
LOOPBACK = "127.0.0.1"
_REFUSED_PAGE = (b"<!doctype html><meta charset=utf-8><title>Outreach</title>"
                 b"<p>Outreach answers only the address it printed when it started (the one with "
                 b"<code>?key=</code>). Open that address.</p>")
_DROPPED_HEADERS = {b"access-control-allow-origin", b"access-control-allow-credentials"}


def new_key() -> str:
    """A random key for one launch (256 bits, URL- and cookie-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


def url_host(addr: str) -> str:
    """An IP address as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{addr}]" if ipaddress.ip_address(addr).version == 6 else addr


class WebGate:
    """The ASGI app in front of Flet's. `host` is the `host:port` the app printed; with
    `any_host` (listening on every address) any `Host` is taken, but the `Origin` must still be
    that host's own and the key must still be there."""

    def __init__(self, app: ASGIApp, *, host: str, key: str, any_host: bool = False) -> None:
        self.app = app
        self.host = host.lower()
        self.any_host = any_host
        self._key = key.encode()
        port = host.rsplit(":", 1)[1]
        self.cookie_name = f"outreach_key_{port}"  # cookies ignore ports: two launches keep their own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:  # lifespan
            await self.app(scope, receive, send)

    # ------------------------------------------------------------------ the checks
    def _host_of(self, headers: dict[bytes, bytes]) -> str | None:
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if not host or (host != self.host and not self.any_host):
            return None
        return host

    def _origin_ok(self, headers: dict[bytes, bytes], host: str) -> bool:
        return headers.get(b"origin", b"").decode("latin-1").lower() == f"http://{host}"

    def _has_key(self, headers: dict[bytes, bytes]) -> bool:
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name.decode("latin-1") == self.cookie_name and hmac.compare_digest(value, self._key):
                return True
        return False

    # ------------------------------------------------------------------ websocket
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        host = self._host_of(headers)
        why = ("host" if host is None else "origin" if not self._origin_ok(headers, host)
               else "key" if not self._has_key(headers) else None)
        if why is None:
            await self.app(scope, receive, send)
            return
        log.warning("web: refused a websocket (%s): host %r, origin %r", why,
                    headers.get(b"host", b"").decode("latin-1"), headers.get(b"origin", b"").decode("latin-1"))
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403

    # ------------------------------------------------------------------ http
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        host = self._host_of(headers)
        origin = headers.get(b"origin")
        if host is None or (origin is not None and not self._origin_ok(headers, host)):
            await _answer(send, 403, _REFUSED_PAGE)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [value for name, value in query if name == KEY_PARAM]
        if offered:
            if len(offered) != 1 or not hmac.compare_digest(offered[0].encode("latin-1", "replace"), self._key):
                await _answer(send, 403, _REFUSED_PAGE)
                return
            rest = urlencode([(n, v) for n, v in query if n != KEY_PARAM])
            location = (scope.get("root_path", "") + scope["path"]) + (f"?{rest}" if rest else "")
            cookie = f"{self.cookie_name}={self._key.decode()}; Path=/; HttpOnly; SameSite=Strict"
            await _answer(send, 303, b"", [(b"location", location.encode("latin-1")),
                                          (b"set-cookie", cookie.encode("latin-1"))])
            return
        if not self._has_key(headers):
            await _answer(send, 403, _REFUSED_PAGE)
            return

        async def send_without_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in _DROPPED_HEADERS] + [(b"referrer-policy", b"no-referrer")]
            await send(message)

        await self.app(scope, receive, send_without_cors)


async def _answer(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ================================================================================== serving
def flet_would_serve_web() -> bool:
    """`ft.run` turns a desktop run into an (ungated) web server on a Linux without a display or
    with FLET_FORCE_WEB_SERVER set; the entry points serve through `serve_web` instead."""
    from flet.utils import get_bool_env_var, is_embedded, is_linux_server

    return not is_embedded() and bool(get_bool_env_var("FLET_FORCE_WEB_SERVER") or is_linux_server())


def listening_socket(addr: str, port: int) -> socket.socket:
    """A socket bound to `addr:port` (port 0: a free one) and listening; RuntimeError if it cannot be."""
    family = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle, as for uvicorn
        sock.bind((addr, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {url_host(addr)}:{port} ({exc.strerror or exc}): "
                           "stop what uses it or pass --port") from exc
    return sock


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_web(main: Callable[..., Any], *, port: int = 0, listen: str = LOOPBACK, assets_dir: str | None = None,
              announce: Callable[[str], None] | None = None) -> None:
    """Serve `main` (Flet's per-session entry) to the browser behind `WebGate` until SIGINT or
    SIGTERM. `announce(url)` gets the address with this launch's key once the socket listens."""
    import flet as ft
    import uvicorn

    env_ip = os.environ.get("FLET_SERVER_IP")
    if env_ip and env_ip != listen:
        log.warning("web: FLET_SERVER_IP=%s ignored, listening on %s", env_ip, listen)
        print(f"outreach: FLET_SERVER_IP={env_ip} is ignored: web mode listens on {listen} "
              "(--listen ADDR to choose)", flush=True)
    os.environ["FLET_WEB_NO_CDN"] = "1"  # CanvasKit and fonts from the flet-web package, whatever the env says
    flet_app = ft.run(main, export_asgi_app=True, assets_dir=assets_dir, no_cdn=True)
    sock = listening_socket(listen, port)
    wildcard = ipaddress.ip_address(listen).is_unspecified
    shown = LOOPBACK if wildcard else listen
    host = f"{url_host(shown)}:{sock.getsockname()[1]}"
    key = new_key()
    gate = WebGate(flet_app, host=host, key=key, any_host=wildcard)
    server = uvicorn.Server(uvicorn.Config(gate, log_level="warning", access_log=False, ws="websockets-sansio",
                                           lifespan="on", timeout_graceful_shutdown=5))
    if threading.current_thread() is threading.main_thread():
        # uvicorn raises the signal that stopped it again once it has shut down: let a SIGTERM then
        # end like Ctrl-C, so that the caller's `finally` (the local server's stop) runs
        signal.signal(signal.SIGTERM, _interrupt)
    url = f"http://{host}/?{KEY_PARAM}={key}"
    log.info("web: listening on %s:%s", listen, sock.getsockname()[1])
    if announce is not None:
        announce(url)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
