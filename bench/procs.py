"""The processes a benchmark talks to: a real `outreach-server` on a free loopback port (the same
command line as `tests/serverproc.py`, copied here so that the harness does not depend on the test
helpers), the blob server of the transfer limit, and a fresh PostgreSQL schema per run.
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

import requests

__all__ = ["REPO_ROOT", "Proc", "server_process", "blob_server", "create_team_cli", "create_team_db",
           "pg_schema", "free_port", "cpu_seconds"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER_KEY = os.environ.get("OUTREACH_SERVER_KEY") or os.urandom(32).hex()  # shared by every process of a run


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OUTREACH_SERVER_KEY"] = SERVER_KEY
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Proc:
    """A child process serving HTTP on loopback; `url`, `pid`, `stop()`."""

    def __init__(self, argv: Sequence[str], port: int, workdir: Path, health: str, name: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.output = workdir / f"{name}-{port}.out"
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(list(argv), cwd=workdir, env=_env(), stdout=out,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{self._tail()}")
            try:
                if requests.get(self.url + health, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not answer in 30 s:\n{self._tail()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _tail(self) -> str:
        return "".join(self.output.read_text(errors="replace").splitlines(keepends=True)[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def server_process(db_url: str | None, workdir: Path, extra: Sequence[str] = ()) -> Iterator[Proc]:
    """`outreach-server` (as `python -m sync.server.cli`) with its own log file, on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{workdir / 'server.db'}"
    port = free_port()
    argv = [sys.executable, "-m", "sync.server.cli", "--db", db_url, "--host", "127.0.0.1",
            "--port", str(port), "--log-file", str(workdir / f"server-{port}.log"), *extra]
    proc = Proc(argv, port, workdir, "/v1/health", "outreach-server")
    proc.db_url = db_url  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def blob_server(workdir: Path) -> Iterator[Proc]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "bench.blobserver", str(port)], port, workdir, "/health", "blob-server")
    try:
        yield proc
    finally:
        proc.stop()


def create_team_cli(db_url: str, name: str) -> str:
    """`outreach-server team create NAME --json`: the operator's one-time code."""
    done = subprocess.run([sys.executable, "-m", "sync.server.cli", "--db", db_url, "team", "create", name,
                           "--json"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"team create failed: {done.stderr.strip()}")
    return str(json.loads(done.stdout)["code"])


def create_team_db(db_url: str, names: Sequence[str]) -> list[str]:
    """Many teams at once, straight in the server's database with the server's own `crud` (what the
    CLI does, without a process per team). Returns each team's one-time operator code."""
    from sync.protocol import EnrollmentCode
    from sync.server import crud
    from sync.server.config import ServerSettings
    from sync.server.db import Database
    from sync.server.keys import load_server_key

    settings = ServerSettings(db_url=db_url, server_key=SERVER_KEY)
    key = load_server_key(settings)
    db = Database.from_settings(settings)
    codes = []
    try:
        with db.transaction(write=True) as session:
            for name in names:
                code = EnrollmentCode.generate()
                crud.create_team(session, name=name, lookup=code.lookup, secret=code.secret, key=key,
                                 ttl_seconds=3600, now=time.time())
                codes.append(str(code))
    finally:
        db.dispose()
    return codes


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema in the database of `base_url`, dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:12]}"
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


@contextmanager
def temp_dir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
