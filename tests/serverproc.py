"""A real `outreach-server` process for end-to-end tests (a helper module, not a test file).

Usage (pytest puts `tests/` on sys.path, so ``import serverproc`` works from any test file)::

    from serverproc import ServerProcess, create_team

    with ServerProcess() as server:              # SQLite file in a fresh temp dir, free port
        code = create_team(server.db_url, "Unit") # the one-time operator code (str)
        requests.get(server.url + "/v1/health")
        server.stop(); server.start()             # restart: same port, same database
        server.log_path.read_text()               # the server's log file

API:
- ``ServerProcess(db_url=None, *, workdir=None, port=None, extra_args=(), startup_timeout=20.0)``:
  ``db_url`` defaults to ``sqlite:///<workdir>/server.db``; ``workdir`` defaults to a new temp dir
  (removed on exit of the context manager only when it was created here); ``port`` defaults to a
  free loopback port. Attributes: ``url`` (``http://127.0.0.1:PORT``, no trailing slash), ``port``,
  ``db_url``, ``workdir``, ``log_path`` (``--log-file``), ``output_path`` (stdout and stderr).
  ``start()`` launches and waits for ``GET /v1/health`` (raises RuntimeError with the log tail if it
  exits or times out), ``stop()`` terminates (SIGTERM, then kill) and is safe to call twice,
  ``running`` tells whether the process is alive. It is a context manager (start/stop).
- ``create_team(db_url, name) -> str``: runs ``outreach-server --db URL team create NAME --json``
  and returns the code; ``create_team_info(db_url, name) -> (team_id, code)`` returns both.
- ``pg_schema(base_url)``: a context manager yielding the URL of a fresh PostgreSQL schema
  (dropped afterwards), for tests on ``OUTREACH_TEST_PG_URL``.

The process runs ``[sys.executable, "-m", "sync.server.cli", ...]`` with the repository root on
PYTHONPATH and the work dir as its current directory, and with ``OUTREACH_SERVER_KEY`` set to one
key for the whole test run (a PostgreSQL server needs its key given; `team create` and the server
must share it), unless the environment already has one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import requests

__all__ = ["ServerProcess", "create_team", "create_team_info", "pg_schema", "free_port", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_KEY = os.urandom(32).hex()  # the server key of every process of this test run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OUTREACH_SERVER_KEY", SERVER_KEY)
    return env


def _cli(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync.server.cli", *args],
        cwd=cwd or REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_team_info(db_url: str, name: str) -> tuple[str, str]:
    """Create a team with the CLI; return (team_id, one-time operator code)."""
    done = _cli(["--db", db_url, "team", "create", name, "--json"])
    if done.returncode != 0:
        raise RuntimeError(f"team create failed ({done.returncode}): {done.stderr.strip()}")
    answer = json.loads(done.stdout)
    return answer["team_id"], answer["code"]


def create_team(db_url: str, name: str) -> str:
    """Create a team with the CLI; return its one-time operator code."""
    return create_team_info(db_url, name)[1]


class ServerProcess:
    """One `outreach-server` process on loopback. See the module docstring."""

    def __init__(
        self,
        db_url: str | None = None,
        *,
        workdir: Path | str | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="outreach-server-"))
        )
        self.db_url = db_url or f"sqlite:///{self.workdir / 'server.db'}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.output_path = self.workdir / f"server-{self.port}.out"
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ServerProcess:
        if self.running:
            return self
        args = [
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-file",
            str(self.log_path),
        ]
        with open(self.output_path, "ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "sync.server.cli", *args, *self.extra_args],
                cwd=self.workdir,
                env=_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"outreach-server exited with {self._process.returncode}:\n{self._tail()}")
            try:
                if requests.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"outreach-server did not answer /v1/health in {self.startup_timeout} s:\n{self._tail()}"
        )

    def _tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.output_path, self.log_path):
            if path.exists():
                text += "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        return text

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema in the database of `base_url`, dropped afterwards. Yields a
    URL whose connections use it (``options=-csearch_path=...``): give it to `ServerProcess`,
    `create_team` or `ServerSettings(db_url=...)` for a database of the test's own."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        admin.dispose()
