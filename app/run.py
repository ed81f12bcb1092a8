"""`make run`: the app with a local sync server, from nothing to a logged contact.

    python -m app.run [--data-dir DIR] [--server-port P] [--port P] [--web | --desktop]
                      [--listen ADDR] [--no-server --server-url URL]

It starts `outreach-server` on loopback with its SQLite file in DIR (`DIR/server.db`, log in
`DIR/server.log`), creates a team on first run and prefills its one-time code on the first-run
screen, then runs the app on `DIR/app`: a desktop window where there is a display, else Flet's
web mode in the browser (CanvasKit served from the installed flet-web package, no internet). Web
mode listens on 127.0.0.1 only (another address only with `--listen ADDR`, with a warning) and
answers only the address it prints, which carries a key made for this launch (see `app.ui.web`).
Everything it and the server write in DIR is the user's alone (umask 077, `app.files`). A server
that stops on its own is reaped and started again, with a line in the terminal; it stops when the
app does. The terminal shows only what the user needs: the address, the team code, where the data
is and how to stop.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from models.errors import StoreError
from models.workspace import Workspace

from .config import AppConfig, resolve_data_dir
from .files import keep_private
from .ui.web import LOOPBACK, flet_would_serve_web, is_loopback, serve_web

__all__ = ["main", "serve", "LocalServer", "has_display"]

log = logging.getLogger("outreach.app")
REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_SERVER_PORT = 8700
DEFAULT_APP_PORT = 8550
# a local server that stopped is started again after this pause, doubled while it keeps failing
RESTART_FIRST_PAUSE = 1.0
RESTART_MAX_PAUSE = 60.0


def _say(line: str) -> None:
    """A line for the person who ran `make run` (their terminal), never personal data."""
    print(line, flush=True)


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

    def __init__(self, data_dir: Path, port: int | None = None, *, say: Callable[[str], None] | None = None) -> None:
        self.data_dir = data_dir
        self.say = say or _say
        self.db_url = f"sqlite:///{data_dir / 'server.db'}"
        self.log_path = data_dir / "server.log"
        self._settings = data_dir / "server.json"
        self.port = port or self._remembered_port() or free_port(DEFAULT_SERVER_PORT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

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
        """Start the server and wait until it answers; from then on a server that stops is reaped
        (no `<defunct>` process stays behind), said so and started again, until `stop()`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._launch(timeout)
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="outreach-server-watch", daemon=True)
            self._watchdog.start()

    def _launch(self, timeout: float) -> None:
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} is taken: stop what uses it or pass --server-port")
        self._settings.write_text(json.dumps({"port": self.port}))
        with open(self.data_dir / "server.out", "ab") as out:
            # a session of its own: a Ctrl+C in the terminal reaches the app, which stops the server
            # in order (and does not mistake a server killed by the same keypress for one to restart)
            process = subprocess.Popen(
                self._cli("--host", "127.0.0.1", "--port", str(self.port), "--log-file", str(self.log_path)),
                cwd=self.data_dir, env=_child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        with self._lock:
            self.process = process
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"outreach-server stopped ({_exit_words(process.returncode)}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=1) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        _end(process)
        raise RuntimeError(f"outreach-server did not answer on {self.url}; see {self.log_path}")

    def _watch(self) -> None:
        """Wait for the server (which reaps it the moment it exits) and start it again, after a
        pause that doubles while it keeps failing (at most `RESTART_MAX_PAUSE`)."""
        pause = RESTART_FIRST_PAUSE
        while not self._stopping.is_set():
            with self._lock:
                process = self.process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.warning("outreach-server stopped (%s); starting it again", _exit_words(code))
            self.say(f"Outreach server stopped ({_exit_words(code)}); starting it again. Its log: {self.log_path}")
            failed_before = False
            while not self._stopping.wait(pause):
                try:
                    self._launch(timeout=30.0)
                except RuntimeError as exc:
                    pause = min(pause * 2, RESTART_MAX_PAUSE)
                    if not failed_before:  # said once, not on every try
                        self.say(f"Outreach server could not start again: {exc}; trying again every "
                                 f"{RESTART_MAX_PAUSE:g} s at most")
                    failed_before = True
                    continue
                if self._stopping.is_set():  # stopped while it was starting: `stop()` ends it
                    return
                pause = RESTART_FIRST_PAUSE
                log.info("outreach-server running again on %s", self.url)
                self.say(f"Outreach server is running again: {self.url}")
                break

    def stop(self) -> None:
        """Stop the server (and its watch): nothing is started again, nothing stays a zombie."""
        self._stopping.set()
        with self._lock:
            process, self.process = self.process, None
        if process is not None:
            _end(process)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=40)
        with self._lock:  # a start in progress when stop came is ended by the watch; be sure
            late, self.process = self.process, None
        if late is not None:
            _end(late)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Terminate `process` and reap it (kill it if it does not stop in 10 s)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _exit_words(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"stopped by {signal.Signals(-code).name}"
        except ValueError:
            return f"stopped by signal {-code}"
    return f"exit code {code}"


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
    _say(f"Open the app in your browser: {url}")
    _say("Stop with Ctrl+C (the server stops with the app).")


def serve(config: AppConfig, *, web: bool, port: int = 0, listen: str = LOOPBACK) -> None:
    """Run the app until its window closes (desktop) or the process is stopped (web). Web mode
    prints the address to open (with this launch's key) once it listens."""
    import flet as ft

    from .ui.main import build_main  # flet loads only when the app starts, not for --help or the server

    if not web and flet_would_serve_web():
        raise RuntimeError("no display for a desktop window here: use --web")
    if web:
        serve_web(build_main(config), port=port, listen=listen, assets_dir=str(ASSETS), announce=_announce)
    else:
        _say("The app opens in a window of its own; close it to stop (the server stops with the app).")
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
            _say(f"Outreach server: {server.url}")
            if code:
                _say(f"First run: the team code is filled in for you: {code}")
        _say(f"Your data: {data_dir}  " + ("(the app's in app/, the server's in server.db; logs: app.log, server.log)"
                                           if server is not None else "(the app's in app/; log: app.log)"))
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
