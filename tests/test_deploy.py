"""Running the server as an operator does (issue 18; issue 16 item 13): one default database for
`make run` and `make server` / `outreach-server`, the database named at start, a clear answer when
devices of a team reach a server started on a new, empty database, `--workers` refused on SQLite,
and the files under deploy/ checked by the tools that read them (each test is skipped, saying
why, where its tool is missing: a skip is not a pass)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from serverproc import REPO_ROOT, ServerProcess, _env, create_team, free_port
from test_server_process import run_cli

from sync.protocol import PROTOCOL_HEADER
from sync.server.cli import _settings, build_parser, default_data_dir

DEPLOY = REPO_ROOT / "deploy"


def _path_of(db_url: str) -> Path:
    return Path(db_url.split(":///", 1)[1]).resolve()


# --- one default database (issue 16, item 13) ----------------------------------------------------


def test_make_run_and_make_server_open_one_database(tmp_path: Path) -> None:
    from app.config import resolve_data_dir
    from app.run import LocalServer

    data = tmp_path / "data"
    data.mkdir()
    launcher = _path_of(LocalServer(data, free_port()).db_url)  # what `make run` starts
    dry = subprocess.run(["make", "-n", "server", f"DATA={data}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=False, timeout=60)
    line = next(line for line in dry.stdout.splitlines() if "outreach-server" in line)
    served = _settings(build_parser().parse_args(shlex.split(line)[1:])).db_url  # what `make server` opens
    assert _path_of(served) == launcher == data / "server.db"
    # without flags: the launcher's and the server's default folders are one
    env = {"OUTREACH_DATA_DIR": str(tmp_path / "elsewhere")}
    assert default_data_dir(env) == resolve_data_dir(None, env=env)
    assert default_data_dir({}) == resolve_data_dir(None, env={})


def test_the_server_says_which_database_it_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run_cli("--data-dir", str(data), "team", "create", "Unit", "--json")
    assert done.returncode == 0, done.stderr
    assert f"database {data / 'server.db'} (new and empty: no teams yet)" in done.stderr
    port = free_port()
    log = tmp_path / "server.log"
    env = {**_env(), "OUTREACH_DATA_DIR": str(data)}
    env.pop("OUTREACH_SERVER_KEY")  # the key made beside the file by `team create`
    process = subprocess.Popen([sys.executable, "-m", "sync.server.cli", "--port", str(port), "--log-file", str(log)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        said = ""
        for _ in range(50):  # printed before it serves (a library's warning may come first)
            said = process.stderr.readline()
            if not said or said.startswith("outreach-server:"):
                break
        assert said.strip() == f"outreach-server: database {data / 'server.db'} (1 team, 0 devices)"
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not (tmp_path / "outreach-server.db").exists()


def test_devices_of_a_team_on_a_new_empty_database_are_told_so(tmp_path: Path) -> None:
    device_token = "A" * 43  # the shape of the tokens the server hands out
    with ServerProcess(workdir=tmp_path, startup_timeout=90) as server:
        headers = {PROTOCOL_HEADER: "1.0", "Authorization": f"Bearer {device_token}"}
        answer = requests.get(server.url + "/v1/pull", headers=headers, timeout=10)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "60", answer.text
        error = answer.json()["error"]
        assert error["code"] == "unavailable" and error["detail"]["reason"] == "no_teams"
        assert "new, empty database" in error["message"]
        assert "new, empty database" in server.log_path.read_text()
        assert str(tmp_path / "server.db") in server.log_path.read_text()  # which one
        malformed = requests.get(server.url + "/v1/me", headers={**headers, "Authorization": "Bearer x"}, timeout=10)
        assert malformed.status_code == 401
        create_team(server.db_url, "Unit")  # a database with a team: an unknown token is just unknown
        answer = requests.get(server.url + "/v1/pull", headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"


def test_workers_on_sqlite_are_refused_with_one_line(tmp_path: Path) -> None:
    done = run_cli("--db", f"sqlite:///{tmp_path / 'x.db'}", "--workers", "2")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "needs PostgreSQL" in done.stderr, done.stderr
    assert "Value error" not in done.stderr
    assert not (tmp_path / "x.db").exists()


# --- deploy/ -----------------------------------------------------------------------------------


def test_the_unit_and_container_commands_are_flags_the_server_takes() -> None:
    unit = (DEPLOY / "outreach-server.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, flags=re.M | re.S)
    assert exec_start is not None
    args = shlex.split(exec_start.group(1).replace("\\\n", " "))
    assert args[0].endswith("/outreach-server")
    parsed = build_parser().parse_args(args[1:])
    assert parsed.workers == 2 and parsed.host == "127.0.0.1" and parsed.server_key_file
    assert "--db" not in args  # the URL with its password comes from the environment file
    compose = (DEPLOY / "compose.yaml").read_text()
    command = re.search(r'command: (\[.*?\])', compose, flags=re.S)
    assert command is not None
    parsed = build_parser().parse_args(json.loads(command.group(1)))
    assert parsed.workers == 2 and parsed.forwarded_allow_ips == "172.30.70.0/24"
    assert "subnet: 172.30.70.0/24" in compose
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Containerfile").read_text(), flags=re.M)
    assert cmd is not None and build_parser().parse_args(json.loads(cmd.group(1))).port == 8700


def _compose_tool() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    for tool in ("docker-compose", "podman-compose"):
        if shutil.which(tool):
            return [tool]
    return None


def test_the_compose_file_is_valid() -> None:
    tool = _compose_tool()
    if tool is None:
        pytest.skip("no compose tool here (docker compose, docker-compose or podman-compose): not checked")
    values = {"OUTREACH_DB_PASSWORD": "pw", "OUTREACH_SERVER_KEY": "00" * 32, "OUTREACH_DOMAIN": "outreach.example.org"}
    env = {k: v for k, v in os.environ.items() if k not in values}
    checked = subprocess.run([*tool, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], env={**env, **values},
                             capture_output=True, text=True, check=False, timeout=60)
    assert checked.returncode == 0, checked.stderr
    missing = subprocess.run([*tool, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], env=env,
                             capture_output=True, text=True, check=False, timeout=60)
    assert missing.returncode != 0 and "OUTREACH_DB_PASSWORD" in missing.stdout + missing.stderr


def test_the_caddyfile_is_valid() -> None:
    if not shutil.which("caddy"):
        pytest.skip("caddy is not installed here: the Caddyfile is not checked")
    checked = subprocess.run(["caddy", "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
                             env={**os.environ, "OUTREACH_DOMAIN": "outreach.example.org"},
                             capture_output=True, text=True, check=False, timeout=60)
    assert checked.returncode == 0, checked.stderr[-2000:]


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed here: the unit is not checked")
    unit = (DEPLOY / "outreach-server.service").read_text()
    # The paths of an installed server do not exist here: point them at what does.
    unit = unit.replace("/opt/outreach/.venv/bin/outreach-server", shutil.which("true") or "/bin/true")
    unit = unit.replace("EnvironmentFile=/etc/outreach/server.env", "EnvironmentFile=-/etc/outreach/server.env")
    copy = tmp_path / "outreach-server.service"
    copy.write_text(unit)
    checked = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                             check=False, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "outreach-server.service" not in checked.stderr, checked.stderr  # no warning about it


# --- a database that cannot be reached ----------------------------------------------------------


def test_a_database_out_of_reach_is_told_from_a_fault() -> None:
    import sqlite3

    import psycopg
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from sync.server.db import unreachable

    def wrapped(cls: type, orig: Exception) -> Exception:
        return cls("SELECT 1", None, orig)  # type: ignore[no-any-return]

    assert unreachable(wrapped(OperationalError, psycopg.OperationalError("connection refused")))
    assert unreachable(wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection")))
    assert unreachable(wrapped(OperationalError, sqlite3.OperationalError("database is locked")))
    assert unreachable(PoolTimeout("QueuePool limit reached"))
    assert not unreachable(wrapped(OperationalError, sqlite3.OperationalError("no such table: op")))
    assert not unreachable(wrapped(ProgrammingError, psycopg.ProgrammingError("syntax error")))
    assert not unreachable(wrapped(IntegrityError, psycopg.IntegrityError("duplicate key")))
    assert not unreachable(ValueError("not a database error"))
