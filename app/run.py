"""`make run`: the app with a local sync server, from nothing to a logged contact.

    python -m app.run [--data-dir DIR] [--server-port P] [--port P] [--web | --desktop]
                      [--listen ADDR] [--no-server --server-url URL]

It starts `outreach-server` on loopback with its SQLite file in DIR (`DIR/server.db`, log in
`DIR/server.log`), creates a team on first run and prefills its one-time code on the first-run
screen, then runs the app on `DIR/app`: a desktop window where there is a display, else Flet's
web mode in the browser (CanvasKit served from the installed flet-web package, no internet). Web
mode listens on 127.0.0.1 only (another address only with `--listen ADDR`, with a warning) and
answers only the address it prints, which carries a key made for this launch (see `app.web`).
Everything it and the server write in DIR is the user's alone (umask 077, `app.files`). The
server stops when the app does.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from models.errors import StoreError
from models.workspace import Workspace

from .config import resolve_data_dir
from .files import keep_private
from .services import AppConfig
from .web import LOOPBACK, flet_would_serve_web, is_loopback, serve_web

__all__ = ["main", "serve", "LocalServer", "has_display"]

log = logging.getLogger("outreach.app")
REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_SERVER_PORT = 8700
DEFAULT_APP_PORT = 8550


def has_display(env: dict[str, str] | None = None) -> bool:
    """A desktop window can open: macOS and Windows always, Linux with an X display."""
    env = dict(os.environ) if env is None else env
    system = platform.system()
    if system in ("Darwin", "Windows"):
        return True
    return bool(env.get("DISPLAY"))  # Flet's desktop client on Linux needs X (or XWayland)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(preferred: int | None = None) -> int:
    if preferred and port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LocalServer:
    """`outreach-server` on loopback with SQLite in the data dir. Its port is kept in
    `DIR/server.json` so that the app, which remembers its server's address, finds it again."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.db_url = f"sqlite:///{data_dir / 'server.db'}"
        self.log_path = data_dir / "server.log"
        self._settings = data_dir / "server.json"
        self.port = port or self._remembered_port() or free_port(DEFAULT_SERVER_PORT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def _remembered_port(self) -> int | None:
        try:
            return int(json.loads(self._settings.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sync.server.cli", "--db", self.db_url, *args]

    def create_team(self, name: str = "Outreach") -> str:
        done = subprocess.run(self._cli("team", "create", name, "--json"), cwd=self.data_dir, env=_child_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"could not create a team: {done.stderr.strip()}")
        return str(json.loads(done.stdout)["code"])

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} is taken: stop what uses it or pass --server-port")
        self._settings.write_text(json.dumps({"port": self.port}))
        with open(self.data_dir / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                self._cli("--host", "127.0.0.1", "--port", str(self.port), "--log-file", str(self.log_path)),
                cwd=self.data_dir, env=_child_env(), stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"outreach-server stopped (exit {self.process.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=1) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"outreach-server did not answer on {self.url}; see {self.log_path}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _joined(app_dir: Path) -> bool:
    ws = Workspace(app_dir)
    if not ws.exists():
        return False
    try:
        return ws.setting("team_id") is not None
    except StoreError:
        return False
    finally:
        ws.close()


def _setup_logging(data_dir: Path) -> None:
    root = logging.getLogger("outreach")
    root.setLevel(logging.INFO)
    data_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(data_dir / "app.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)


def _announce(url: str) -> None:
    print(f"Open the app in your browser: {url}", flush=True)


def serve(config: AppConfig, *, web: bool, port: int = 0, listen: str = LOOPBACK) -> None:
    """Run the app until its window closes (desktop) or the process is stopped (web). Web mode
    prints the address to open (with this launch's key) once it listens."""
    import flet as ft

    from .main import build_main

    if not web and flet_would_serve_web():
        raise RuntimeError("no display for a desktop window here: use --web")
    if web:
        serve_web(build_main(config), port=port, listen=listen, assets_dir=str(ASSETS), announce=_announce)
    else:
        ft.run(build_main(config), view=ft.AppView.FLET_APP, assets_dir=str(ASSETS))


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r} (e.g. 127.0.0.1, 0.0.0.0, ::1)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.run", description="Outreach: the app with a local sync server.")
    parser.add_argument("--data-dir", help="where the app and the local server keep their data")
    parser.add_argument("--server-port", type=int, help=f"local server port (default {DEFAULT_SERVER_PORT})")
    parser.add_argument("--port", type=int, default=0, help=f"web mode: the app's port (default {DEFAULT_APP_PORT})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--web", action="store_true", help="serve the app to the browser (127.0.0.1 only)")
    mode.add_argument("--desktop", action="store_true", help="open a desktop window")
    parser.add_argument("--listen", type=_address, metavar="ADDR",
                        help="web mode: listen on ADDR instead of 127.0.0.1 (0.0.0.0: every address); "
                             "whoever reaches it with the printed key can use this device's app")
    parser.add_argument("--no-server", action="store_true", help="do not start a local server")
    parser.add_argument("--server-url", help="prefill this server address on the first-run screen")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.listen and args.desktop:
        parser.error("--listen is for web mode (--web)")
    data_dir = keep_private(resolve_data_dir(args.data_dir))
    app_dir = data_dir / "app"  # the app's own directory: a wipe never touches the server's file
    _setup_logging(data_dir)
    server: LocalServer | None = None
    code: str | None = None
    server_url = args.server_url
    try:
        if not args.no_server:
            server = LocalServer(data_dir, args.server_port)
            if not _joined(app_dir):
                code = server.create_team("Outreach")
            server.start()
            server_url = server_url or server.url
            print(f"Outreach server: {server.url}  (SQLite: {data_dir / 'server.db'})", flush=True)
            if code:
                print(f"First run: the team code is filled in for you: {code}", flush=True)
        web = args.web or args.listen is not None or (not args.desktop and not has_display())
        listen = args.listen or LOOPBACK
        if web and not is_loopback(listen):
            print(f"outreach: warning: listening on {listen}, not on loopback only: anyone who reaches this "
                  "address with the printed key can use this device's app, and the connection is not "
                  "encrypted (http)", file=sys.stderr, flush=True)
        port = (args.port or free_port(DEFAULT_APP_PORT)) if web else 0
        config = AppConfig(data_dir=app_dir, server_url=server_url, join_code=code, web=web)
        serve(config, web=web, port=port, listen=listen)
    except RuntimeError as exc:
        print(f"outreach: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
