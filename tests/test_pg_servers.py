"""Several `outreach-server` processes on one PostgreSQL (issue 18): a long-poll wakes for a push
through another process (LISTEN/NOTIFY), a lost listening connection comes back and rechecks its
waiters, processes and workers started at once migrate once, and PostgreSQL stopped and started
under a running server answers 503 `unavailable` meanwhile and loses nothing acknowledged.

Real server processes on loopback, on a fresh schema of OUTREACH_TEST_PG_URL (skipped without it).
Stopping PostgreSQL needs root and `pg_ctlcluster` (skipped otherwise); it is started again in a
`finally`, whatever happens, and kept down for a few seconds only: other test runs may share it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from serverproc import ServerProcess, create_team
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_server_process import Wire, op, pull_all

from sync.protocol import PROTOCOL_HEADER
from sync.server.db import MIGRATIONS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")
# Seconds from a push's answer to the other process's long-poll answer: within a second for the
# median of five, and never near the 20 s safety re-read (the machine may be busy with other
# work: one slow round is not a failure). The figure lives in the bench (load.pg.xproc_wake).
WAKE_BOUND = 1.0
WAKE_WORST = 5.0
START = 90.0  # seconds for a server to answer its first health check on a busy machine


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """`serverproc.pg_schema`, on connections made when needed: its own pooled connection would
    not survive PostgreSQL's restart in the middle of a test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        try:
            yield make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
                hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture
def schema_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("OUTREACH_TEST_PG_URL is not set")
    with fresh_schema(PG_URL) as url:
        yield url


def _schema_of(url: str) -> str:
    options = make_url(url).query["options"]
    assert isinstance(options, str)
    return options.split("search_path=", 1)[1]


def _listener_name(url: str) -> str:
    """The application name of the listening connections on this schema (sync/server/wake.py)."""
    channel = "outreach_" + hashlib.md5(_schema_of(url).encode()).hexdigest()[:16]
    return f"outreach-server listener {channel}"


def _listeners(url: str) -> int:
    engine = create_engine(PG_URL or url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                                    {"n": _listener_name(url)}).scalar_one())
    finally:
        engine.dispose()


def _until(condition: Any, timeout: float, what: str) -> None:
    """Wait for a condition of another process that sends no event (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


class Poll:
    """A long-poll in a thread: `result` and the monotonic time it came back."""

    def __init__(self, wire: Wire, token: str, since: int = 0, wait: float = 25) -> None:
        self.result: dict[str, Any] = {}
        self.at = 0.0
        self.started = time.monotonic()

        def run() -> None:
            self.result = wire.call("GET", "/v1/pull", token, params={"since": since, "wait": wait})
            self.at = time.monotonic()

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self, timeout: float = 30) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the long-poll did not come back"
        return self.result


def _park() -> None:
    # Gives the long-poll time to read the empty log and wait. Not synchronisation: a poll that has
    # not parked yet reads the new op at once and passes just as well; parked, only a NOTIFY wakes
    # it within the bound (the database re-read is a 20 s safety net).
    time.sleep(0.3)


def _pair(url: str, *extra: str) -> list[ServerProcess]:
    servers = [ServerProcess(url, extra_args=extra, startup_timeout=START) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(), servers))
    return servers


def test_a_long_poll_wakes_for_a_push_through_another_process(schema_url: str) -> None:
    servers = _pair(schema_url)
    try:
        a, b = Wire(servers[0].url), Wire(servers[1].url)
        coord = a.found(create_team(schema_url, "Unit"))
        worker = a.worker(coord, "phone")
        since, delays = 0, []
        for round_ in range(5):
            poll = Poll(b, coord["token"], since)
            _park()
            sent = op(round_ + 1)
            a.call("POST", "/v1/push", worker["token"], json={"ops": [sent]})
            pushed = time.monotonic()
            page = poll.join()
            assert [o["op_id"] for o in page["ops"]] == [sent["op_id"]]
            delays.append(poll.at - pushed)
            since = page["next"]
        assert sorted(delays)[2] < WAKE_BOUND and max(delays) < WAKE_WORST, delays
        logs = "".join(s.log_path.read_text() for s in servers)
        assert "Traceback" not in logs and " ERROR " not in logs
    finally:
        for server in servers:
            server.stop()


def test_a_lost_listening_connection_comes_back_and_wakes_its_waiters(schema_url: str) -> None:
    from sync.server import crud
    from sync.server.config import ServerSettings
    from sync.server.db import Database

    servers = _pair(schema_url)
    admin = create_engine(PG_URL or schema_url, poolclass=NullPool)
    try:
        a, b = Wire(servers[0].url), Wire(servers[1].url)
        coord = a.found(create_team(schema_url, "Unit"))
        worker = a.worker(coord, "phone")
        _until(lambda: _listeners(schema_url) == 2, 10, "both processes listen")

        # A waiter parks; an op lands without any NOTIFY (as if sent while nobody listened); the
        # listening connections are cut. Back, each process wakes its waiters once: the op is found
        # long before the 20 s safety re-read.
        poll = Poll(b, coord["token"])
        _park()
        db = Database.from_settings(ServerSettings(db_url=schema_url, server_key=os.urandom(32).hex()))
        try:
            with db.transaction(write=True) as session:
                crud.push_ops(session, team_id=coord["team_id"], device_id=worker["device_id"],
                              ops=[crud.PushOp(os.urandom(16).hex(), 1, os.urandom(16).hex(), 1, b"x" * 40)],
                              now=time.time())
        finally:
            db.dispose()
        cut = time.monotonic()
        with admin.connect() as conn:
            cut_off = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                        "WHERE application_name = :n"), {"n": _listener_name(schema_url)})
            assert cut_off.scalar_one() == 2
        page = poll.join()
        assert [o["device_seq"] for o in page["ops"]] == [1]
        assert poll.at - cut < 10
        _until(lambda: _listeners(schema_url) == 2, 15, "both processes listen again")

        # And NOTIFY wakes across processes again.
        poll = Poll(b, coord["token"], page["next"])
        _park()
        a.call("POST", "/v1/push", worker["token"], json={"ops": [op(2)]})
        pushed = time.monotonic()
        assert [o["device_seq"] for o in poll.join()["ops"]] == [2]
        assert poll.at - pushed < WAKE_WORST
        logs = "".join(s.log_path.read_text() for s in servers)
        assert "listening for other processes' pushes again" in logs and "Traceback" not in logs
    finally:
        admin.dispose()
        for server in servers:
            server.stop()


def test_servers_and_workers_started_at_once_migrate_once(schema_url: str) -> None:
    servers = [ServerProcess(schema_url, startup_timeout=START),
               *(ServerProcess(schema_url, extra_args=["--workers", "2"], startup_timeout=START) for _ in range(2))]
    try:
        with ThreadPoolExecutor(len(servers)) as pool:  # all start, and migrate, at once
            list(pool.map(lambda server: server.start(), servers))
        engine = create_engine(schema_url)
        try:
            with engine.connect() as conn:
                names = [row[0] for row in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
        finally:
            engine.dispose()
        assert names == sorted(m.name for m in MIGRATIONS)  # each recorded once
        for server in servers[1:]:
            _until(lambda server=server: len(set(re.findall(r"Started server process \[(\d+)\]",
                                                            server.log_path.read_text()))) == 2,
                   START, "both workers of a process started")
            assert "workers=2" in server.log_path.read_text()
        logs = "".join(s.log_path.read_text() + s.output_path.read_text() for s in servers)
        assert "Traceback" not in logs and " ERROR " not in logs

        # Any worker of any process serves the team; a long-poll on one wakes for a push on another.
        wires = [Wire(server.url) for server in servers]
        coord = wires[1].found(create_team(schema_url, "Unit"))
        worker = wires[2].worker(coord, "phone")
        poll = Poll(wires[1], coord["token"])
        _park()
        wires[2].call("POST", "/v1/push", worker["token"], json={"ops": [op(1)]})
        pushed = time.monotonic()
        assert len(poll.join()["ops"]) == 1 and poll.at - pushed < WAKE_WORST
    finally:
        for server in servers:
            server.stop()


# --- PostgreSQL stopped and started under running servers -------------------------------------


def _cluster() -> list[str] | None:
    """`[version, name]` of the local cluster that serves OUTREACH_TEST_PG_URL, when this run may
    stop and start it (root, pg_ctlcluster, a loopback URL)."""
    if not PG_URL or os.geteuid() != 0 or not shutil.which("pg_ctlcluster"):
        return None
    url = make_url(PG_URL)
    if url.host not in ("127.0.0.1", "localhost", "::1"):
        return None
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(url.port or 5432):
            return fields[:2]
    return None


def _pg_ctl(cluster: list[str], action: str) -> None:
    subprocess.run(["pg_ctlcluster", *cluster, action, *(["-m", "fast"] if action == "stop" else [])],
                   check=True, timeout=60, capture_output=True)


def _answer(wire: Wire, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {PROTOCOL_HEADER: "1.0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return wire.http.request(method, wire.url + path, headers=headers, timeout=30, **kwargs)


def test_postgres_stopped_and_started_under_running_servers(schema_url: str) -> None:
    cluster = _cluster()
    if cluster is None:
        pytest.skip("stopping PostgreSQL needs root, pg_ctlcluster and a local cluster on the test URL")
    servers = _pair(schema_url)
    try:
        a, b = Wire(servers[0].url), Wire(servers[1].url)
        coord = a.found(create_team(schema_url, "Unit"))
        worker = a.worker(coord, "phone")
        acked = [op(1), op(2), op(3)]
        assert a.call("POST", "/v1/push", worker["token"], json={"ops": acked})["accepted"] == 3
        refused = [op(4), op(5)]
        poll = Poll(b, coord["token"], since=3, wait=8)  # waits into the outage
        _park()

        _pg_ctl(cluster, "stop")
        try:
            for wire in (a, b):
                health = _answer(wire, "GET", "/v1/health")
                assert health.status_code == 503 and health.headers["Retry-After"].isdigit(), health.text
                assert health.json()["error"]["code"] == "unavailable"
                push = _answer(wire, "POST", "/v1/push", worker["token"], json={"ops": refused})
                assert push.status_code == 503 and push.json()["error"]["code"] == "unavailable"
                pull = _answer(wire, "GET", "/v1/pull", coord["token"], params={"since": 0})
                assert pull.status_code == 503 and "Retry-After" in pull.headers
        finally:
            _pg_ctl(cluster, "start")  # whatever happened above

        _until(lambda: all(_answer(w, "GET", "/v1/health").status_code == 200 for w in (a, b)), 30,
               "both servers reach PostgreSQL again")
        poll.join()  # it came back (a 503 or a page): it did not hang
        assert [o["op_id"] for o in pull_all(b, coord["token"])] == [o["op_id"] for o in acked]  # none lost
        again = a.call("POST", "/v1/push", worker["token"], json={"ops": [*acked, *refused]})
        assert (again["accepted"], again["duplicates"]) == (2, 3)  # the refused ones, sent again
        _until(lambda: _listeners(schema_url) == 2, 15, "both processes listen again")
        poll = Poll(b, coord["token"], since=5)
        _park()
        a.call("POST", "/v1/push", worker["token"], json={"ops": [op(6)]})
        pushed = time.monotonic()
        assert [o["device_seq"] for o in poll.join()["ops"]] == [6] and poll.at - pushed < WAKE_WORST
        logs = "".join(s.log_path.read_text() + s.output_path.read_text() for s in servers)
        assert "Traceback" not in logs and "database unavailable" in logs
    finally:
        for server in servers:
            server.stop()
