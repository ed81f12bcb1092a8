"""Web mode answers only its own page (issue 15, item 1). A script that speaks Flet's protocol
over a raw websocket gets the first-run screen, with the team's founding code in it, when it
comes with the printed address's key from the app's own origin; refused at the upgrade (403) in
every other case: a page of another origin (another port of loopback too), no origin at all, no key
or a wrong one, or a `Host` that is not the printed address (DNS rebinding). The HTTP side trades
the key for a cookie once and carries no wildcard CORS header. `FLET_SERVER_IP` in the environment
no longer moves the app off loopback; `--listen ADDR` does, with a warning, and the gate holds there
too. The browser's side is in tests/test_ui_gate.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from uihelpers import REPO_ROOT, AppProcess, free_port, printed_address
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

CODE = "GATE-FOUNDING-CODE-7"  # what the first-run screen is prefilled with, as `make run` does


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    with AppProcess(tmp_path_factory.mktemp("gate") / "device", join_code=CODE) as app:
        yield app


def _key(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["key"][0]


def _cookie(port: int, key: str) -> str:
    return f"outreach_key_{port}={key}"


def _socket(port: int, *, origin: str | None, cookie: str | None, host: str | None = None,
            connect_to: str = "127.0.0.1") -> ClientConnection:
    """A raw websocket on the app's /ws; `host` is the Host header it sends (default: where it connects)."""
    sock = socket.create_connection((connect_to, port), timeout=10)
    try:
        return connect(f"ws://{host or f'{connect_to}:{port}'}/ws", sock=sock, origin=origin,  # type: ignore[arg-type]
                       additional_headers={"Cookie": cookie} if cookie else None, proxy=None, open_timeout=10)
    except BaseException:
        sock.close()
        raise


def _shows_the_founding_code(ws: ClientConnection, timeout: float = 20.0) -> bool:
    """Register as Flet's web client does and read the session's frames until the code shows."""
    page = {"route": "/", "web": True, "platform": "linux", "width": 412, "height": 915}
    ws.send(b"\x00" + msgpack.packb([1, {"session_id": "", "page_name": "", "page": page}]))
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = ws.recv(timeout=1)
        except TimeoutError:
            continue
        seen += frame if isinstance(frame, bytes) else frame.encode()
        if CODE.encode() in seen:
            return True
    return False


def _refused(port: int, **kwargs: str | None) -> int:
    try:
        ws = _socket(port, **kwargs)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return exc.response.status_code
    with ws:
        shown = _shows_the_founding_code(ws, timeout=10)
    raise AssertionError(f"the upgrade was accepted ({kwargs}); founding code shown: {shown}")


def test_the_printed_address_opens_a_session(app: AppProcess) -> None:
    """The right origin with the key's cookie gets the app: the control of every refusal below."""
    with _socket(app.port, origin=f"http://127.0.0.1:{app.port}", cookie=_cookie(app.port, _key(app.url))) as ws:
        assert _shows_the_founding_code(ws)


@pytest.mark.parametrize("case", ["foreign-origin", "no-origin", "another-local-port", "no-key", "wrong-key",
                                  "null-origin", "rebound-host", "localhost-host"])
def test_every_other_websocket_is_refused_before_the_upgrade(app: AppProcess, case: str) -> None:
    own, key = f"http://127.0.0.1:{app.port}", _key(app.url)
    cookie = _cookie(app.port, key)
    other_port = app.port + 1 if app.port < 65535 else app.port - 1
    kwargs: dict[str, str | None] = {
        "foreign-origin": {"origin": "http://localhost:9999", "cookie": cookie},
        "no-origin": {"origin": None, "cookie": cookie},
        "another-local-port": {"origin": f"http://127.0.0.1:{other_port}", "cookie": cookie},
        "no-key": {"origin": own, "cookie": None},
        "wrong-key": {"origin": own, "cookie": _cookie(app.port, key[:-2] + ("AA" if key[-2:] != "AA" else "BB"))},
        "null-origin": {"origin": "null", "cookie": cookie},
        # a DNS-rebinding page: its own name resolves to 127.0.0.1, so Host and Origin agree
        "rebound-host": {"origin": f"http://attacker.example:{app.port}", "cookie": cookie,
                         "host": f"attacker.example:{app.port}"},
        "localhost-host": {"origin": f"http://localhost:{app.port}", "cookie": cookie,
                           "host": f"localhost:{app.port}"},
    }[case]
    assert _refused(app.port, **kwargs) == 403


def test_the_key_is_traded_for_a_cookie_and_nothing_is_served_without_it(app: AppProcess) -> None:
    key = _key(app.url)
    with httpx.Client(base_url=app.base, follow_redirects=False, timeout=10, trust_env=False) as http:
        assert http.get("/").status_code == 403
        assert http.get("/main.dart.js").status_code == 403
        assert http.get("/", params={"key": "wrong"}).status_code == 403
        assert http.get("/", params={"key": [key, key]}).status_code == 403

        opened = http.get("/people/3", params={"key": key, "tab": "notes"})
        assert opened.status_code == 303
        assert opened.headers["location"] == "/people/3?tab=notes"  # the key leaves the address bar
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"outreach_key_{app.port}={key};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert opened.headers["cache-control"] == "no-store"

        page = http.get("/", headers={"Cookie": _cookie(app.port, key)})
        assert page.status_code == 200 and "flutter" in page.text.lower()
        assert "access-control-allow-origin" not in page.headers  # Flet sends "*"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert http.get("/", headers={"Cookie": _cookie(app.port, key),
                                      "Origin": "http://localhost:9999"}).status_code == 403
        assert http.get("/", headers={"Cookie": _cookie(app.port, key),
                                      "Host": f"attacker.example:{app.port}"}).status_code == 403


# ============================================================================ where it listens
class RunProcess:
    """`python -m app.run --no-server --web` with `args`, its output in a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.out = tmp_path / "run.out"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("DISPLAY", None)
        with open(self.out, "wb") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.run", "--no-server", "--web", "--data-dir",
                                          str(tmp_path / "data"), "--port", str(self.port), *args],
                                         cwd=REPO_ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT)

    def address(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = printed_address(self.out.read_text())
            if url:
                return url
            assert self.proc.poll() is None, self.out.read_text()
            time.sleep(0.1)
        raise AssertionError(f"no address printed:\n{self.out.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError("python -m app.run did not stop on SIGTERM") from None


def _reachable(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=2):
            return True
    except OSError:
        return False


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback without setup on Linux only")


@linux_only
def test_flet_server_ip_in_the_environment_does_not_move_the_app_off_loopback(tmp_path: Path) -> None:
    run = RunProcess(tmp_path, env={"FLET_SERVER_IP": "0.0.0.0"})  # noqa: S104 (what is refused)
    try:
        url = run.address()
        assert url.startswith(f"http://127.0.0.1:{run.port}/?key=")
        assert _reachable("127.0.0.1", run.port)
        assert not _reachable("127.0.0.2", run.port)  # a socket on 0.0.0.0 would answer here
        assert "FLET_SERVER_IP=0.0.0.0 is ignored" in run.out.read_text()
    finally:
        run.stop()


@linux_only
def test_listen_elsewhere_only_when_told_with_a_warning_and_the_gate_still_holds(tmp_path: Path) -> None:
    run = RunProcess(tmp_path, "--listen", "0.0.0.0")  # noqa: S104 (what is tested)
    try:
        url = run.address()
        assert "warning: listening on 0.0.0.0" in run.out.read_text()
        key = _key(url)
        host = f"127.0.0.2:{run.port}"  # another address of this machine, as a colleague's laptop would use
        with _socket(run.port, origin=f"http://{host}", cookie=_cookie(run.port, key), connect_to="127.0.0.2"):
            pass
        assert _refused(run.port, origin="http://localhost:9999", cookie=_cookie(run.port, key),
                        connect_to="127.0.0.2") == 403
        assert _refused(run.port, origin=f"http://{host}", cookie=None, connect_to="127.0.0.2") == 403
    finally:
        run.stop()


@pytest.mark.parametrize("args", [["--listen", "my-laptop"], ["--listen", "0.0.0.0", "--desktop"]])
def test_listen_takes_an_address_and_only_in_web_mode(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "app.run", "--no-server", *args], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "--listen" in done.stderr
