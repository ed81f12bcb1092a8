"""Web mode in a real browser (issue 15, item 1): a page served from another origin, in the same
Chromium where the worker has the app open (so the key's cookie is there), cannot open a session:
neither from another site (`http://localhost:<port>`, where SameSite keeps the cookie back) nor from
another port of the same loopback address (where the browser does send the cookie and only the
`Origin` check stands). The hostile page is served by a real server on loopback: Chromium's local
network access checks would block a page it believes public (a Playwright-fulfilled one) on their own. A tab opened without the key gets a refusal, not the app. The app's own page
opens the same socket (the control). The raw-websocket cases are in tests/test_web_gate.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from uihelpers import PHONE, UI, AppProcess, browser  # noqa: F401

pytestmark = pytest.mark.browser

CODE = "GATE-BROWSER-CODE-3"

# what a hostile page runs: open the app's socket, register as Flet's client would, and report
# whether the first-run screen (with the founding code) came back
_ATTACK = """async ([url, code]) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const opened = await new Promise(resolve => {
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(false);
        ws.onclose = () => resolve(false);
    });
    if (!opened) return 'refused';
    // [0x00] + msgpack [1, {session_id: "", page_name: "", page: {route: "/", web: true}}]
    const frame = new Uint8Array([0x00, 0x92, 0x01, 0x83,
        0xaa, ...new TextEncoder().encode('session_id'), 0xa0,
        0xa9, ...new TextEncoder().encode('page_name'), 0xa0,
        0xa4, ...new TextEncoder().encode('page'), 0x82,
        0xa5, ...new TextEncoder().encode('route'), 0xa1, 0x2f,
        0xa3, ...new TextEncoder().encode('web'), 0xc3]);
    let seen = '';
    return await new Promise(resolve => {
        ws.onmessage = e => {
            seen += new TextDecoder('latin1').decode(new Uint8Array(e.data));
            if (seen.includes(code)) { ws.close(); resolve('code shown'); }
        };
        ws.onclose = () => resolve('opened, closed');
        setTimeout(() => { ws.close(); resolve('opened'); }, 15000);
        ws.send(frame);
    });
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    with AppProcess(Path(tmp_path_factory.mktemp("ui-gate")) / "device", join_code=CODE) as app:
        yield app


class _CatPictures(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>cat pictures</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_port() -> Iterator[int]:
    """Another web server on this machine's loopback: the page of another origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CatPictures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _from_page(context: Any, origin: str, app: AppProcess) -> str:
    page = context.new_page()
    try:
        page.goto(origin + "/")
        return str(page.evaluate(_ATTACK, [f"ws://127.0.0.1:{app.port}/ws", CODE]))
    finally:
        page.close()


def test_a_page_of_another_origin_cannot_open_a_session(app: AppProcess, hostile_port: int,
                                                        browser: Any) -> None:  # noqa: F811
    ui = UI(browser, app.url, size=PHONE)  # the worker's tab: the key's cookie is in this browser now
    try:
        ui.expect("setup-pin")
        own = str(ui.page.evaluate(_ATTACK, [f"ws://127.0.0.1:{app.port}/ws", CODE]))
        assert own == "code shown"  # the control: the app's own page may (it is the app)
        assert _from_page(ui.context, f"http://localhost:{hostile_port}", app) == "refused"
        assert _from_page(ui.context, f"http://127.0.0.1:{hostile_port}", app) == "refused"
    finally:
        ui.close()


def test_a_tab_without_the_key_gets_no_app(app: AppProcess, browser: Any) -> None:  # noqa: F811
    context = browser.new_context()
    try:
        page = context.new_page()
        answer = page.goto(app.base)
        assert answer is not None and answer.status == 403
        assert "?key=" in page.content() and CODE not in page.content()
        assert page.locator("flutter-view, flt-glass-pane").count() == 0
    finally:
        context.close()
