"""The real `outreach-server` process: CLI, a push/pull round trip, restarts, logs free of names and
payloads, and (with OUTREACH_TEST_PG_URL) two processes on one PostgreSQL pushing at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from serverproc import REPO_ROOT, SERVER_KEY, ServerProcess, create_team, create_team_info, pg_schema

from models.storage.vault import make_proof
from sync.protocol import PROTOCOL_HEADER, EnrollmentCode, b64e

pytestmark = pytest.mark.e2e

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")


class Wire:
    """Raw protocol calls over HTTP, just enough for these tests (the real client is sync/client.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
        headers = {PROTOCOL_HEADER: "1.0"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.http.request(method, self.url + path, headers=headers, timeout=40, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def join(self, lookup: str, name: str, secret: str | None = None, expect: int = 200) -> dict[str, Any]:
        """With the code's `secret`, the proof the client makes (the server checks a founding one)."""
        public_key, device_id = os.urandom(32), uuid.uuid4().hex
        proof = make_proof(secret.encode("ascii"), public_key, device_id) if secret else os.urandom(32)
        body = {
            "lookup": lookup,
            "device_id": device_id,
            "device_name": name,
            "public_key": b64e(public_key),
            "proof": b64e(proof),
        }
        return self.call("POST", "/v1/join", expect=expect, json=body)

    def found(self, code: str, name: str = "Coordinator laptop") -> dict[str, Any]:
        parsed = EnrollmentCode.parse(code)
        coord = self.join(parsed.lookup, name, parsed.secret)
        assert coord["founding"] is True
        self.keys(coord["token"], [coord["device_id"]])
        return coord

    def keys(self, token: str, device_ids: list[str], epoch: int = 1) -> None:
        keys = [{"epoch": epoch, "device_id": d, "wrapped": b64e(os.urandom(60))} for d in device_ids]
        self.call("POST", "/v1/keys", token, json={"epoch": epoch, "keys": keys})

    def worker(self, coord: dict[str, Any], name: str) -> dict[str, Any]:
        lookup = EnrollmentCode.generate().lookup
        self.call("POST", "/v1/invites", coord["token"], json={"lookup": lookup})
        device = self.join(lookup, name)
        self.keys(coord["token"], [device["device_id"]])
        return device


def op(device_seq: int, payload: bytes | None = None) -> dict[str, Any]:
    return {
        "op_id": uuid.uuid4().hex,
        "device_seq": device_seq,
        "record_id": uuid.uuid4().hex,
        "key_epoch": 1,
        "payload": b64e(payload if payload is not None else os.urandom(48)),
    }


def pull_all(wire: Wire, token: str) -> list[dict[str, Any]]:
    ops, since = [], 0
    while True:
        page = wire.call("GET", "/v1/pull", token, params={"since": since, "limit": 500})
        ops += page["ops"]
        since = page["next"]
        if not page["more"]:
            return ops


def run_cli(*args: str, server_key: str | None = SERVER_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OUTREACH_SERVER_KEY", None)
    if server_key is not None:
        env["OUTREACH_SERVER_KEY"] = server_key
    return subprocess.run(
        [sys.executable, "-m", "sync.server.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_health_team_create_round_trip_and_restart(tmp_path: Path) -> None:
    with ServerProcess(workdir=tmp_path) as server:
        health = requests.get(server.url + "/v1/health", timeout=5).json()
        assert health["status"] == "ok" and health["database"] == "sqlite"
        team_id, code = create_team_info(server.db_url, "Night team")
        wire = Wire(server.url)
        coord = wire.found(code)
        assert coord["team_id"] == team_id and coord["team_name"] == "Night team"
        worker = wire.worker(coord, "Worker phone")
        sent = [op(1), op(2), op(3)]
        assert wire.call("POST", "/v1/push", worker["token"], json={"ops": sent})["accepted"] == 3
        assert [o["op_id"] for o in pull_all(wire, coord["token"])] == [o["op_id"] for o in sent]

        server.stop()
        assert not server.running
        server.start()  # same port, same database
        wire = Wire(server.url)
        assert [o["payload"] for o in pull_all(wire, coord["token"])] == [o["payload"] for o in sent]
        replay = wire.call("POST", "/v1/push", worker["token"], json={"ops": [*sent, op(4)]})
        assert (replay["accepted"], replay["duplicates"], replay["last_seq"]) == (1, 3, 4)
        assert server.log_path.exists()


def test_logs_hold_no_names_payloads_or_tokens(tmp_path: Path) -> None:
    canary_name = "CANARY-Jens-Hansen-sleeps-at-Central-Station"
    canary_payload = b"CANARY-PAYLOAD " + os.urandom(64)
    with ServerProcess(workdir=tmp_path) as server:
        wire = Wire(server.url)
        coord = wire.found(create_team(server.db_url, "Unit"), name=canary_name)
        worker = wire.worker(coord, canary_name + "-2")
        pushed = [op(1, canary_payload), op(2)]
        wire.call("POST", "/v1/push", worker["token"], json={"ops": pushed})
        pull_all(wire, coord["token"])
        bad_join = {
            "lookup": "ZZZZZZZZ",
            "device_id": "x",
            "device_name": canary_name * 3,
            "public_key": "x",
            "proof": "x",
        }
        refused = wire.http.post(
            server.url + "/v1/join", json=bad_join, headers={PROTOCOL_HEADER: "1.0"}, timeout=5
        )
        assert refused.status_code == 422 and canary_name not in refused.text
        listed = wire.call("GET", "/v1/devices", coord["token"])
        assert canary_name in {d["name"] for d in listed["devices"]}  # the one free text the server keeps
    logs = server.log_path.read_bytes() + server.output_path.read_bytes()
    assert b"push team=" in logs  # the log is written, with ids and counts
    for secret in (canary_name.encode(), b"CANARY", pushed[0]["payload"].encode(), coord["token"].encode()):
        assert secret not in logs
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("server.db*"))
    assert canary_name.encode() in stored


def test_cli_team_create_prints_the_code(tmp_path: Path) -> None:
    done = run_cli("--db", f"sqlite:///{tmp_path / 'x.db'}", "team", "create", "Aarhus")
    assert done.returncode == 0, done.stderr
    codes = [line for line in done.stdout.splitlines() if line.count("-") >= 4]
    assert len(codes) == 1 and EnrollmentCode.parse(codes[0])
    as_json = run_cli("team", "create", "Aarhus", "--json", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    answer = json.loads(as_json.stdout)
    assert len(answer["team_id"]) == 32 and EnrollmentCode.parse(answer["code"]).lookup not in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "eighty"],
        ["--no-such-flag"],
        ["--db", "mysql://u:p@h/db"],
        ["--db", "sqlite:////no/such/dir/x.db"],
        ["--ssl-certfile", "/etc/hostname"],
        ["--port", "70000"],
        ["team"],
        ["team", "create"],
        ["team", "create", "   "],
    ],
)
def test_cli_bad_flags_give_one_line(args: list[str], tmp_path: Path) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("outreach-server: error:"), done.stderr
    assert done.stdout == ""


def test_cli_access_log_is_off_unless_asked() -> None:
    from sync.server.cli import _settings, build_parser

    assert _settings(build_parser().parse_args(["--db", "sqlite://"])).access_log is False
    assert _settings(build_parser().parse_args(["--db", "sqlite://", "--access-log"])).access_log is True


def test_cli_team_create_and_the_server_share_the_key_beside_the_sqlite_file(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sync.server import ServerSettings, create_app

    url = f"sqlite:///{tmp_path / 'x.db'}"
    done = run_cli("--db", url, "team", "create", "Aarhus", "--json", server_key=None)
    assert done.returncode == 0, done.stderr
    code = EnrollmentCode.parse(json.loads(done.stdout)["code"])
    key_file = tmp_path / "x.db.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.read_text().strip() not in done.stdout + done.stderr
    with TestClient(create_app(ServerSettings(db_url=url))) as client:  # the server's start finds the same key
        public_key, device_id = os.urandom(32), uuid.uuid4().hex
        body = {"lookup": code.lookup, "device_id": device_id, "device_name": "Laptop",
                "public_key": b64e(public_key), "proof": b64e(make_proof(code.secret_bytes, public_key, device_id))}
        joined = client.post("/v1/join", json=body, headers={PROTOCOL_HEADER: "1.0"})
        assert joined.status_code == 200 and joined.json()["founding"] is True, joined.text


def test_cli_without_a_key_for_postgresql_is_one_line() -> None:
    done = run_cli("--db", "postgresql+psycopg://nobody:x@127.0.0.1:1/none", "team", "create", "X", server_key=None)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "OUTREACH_SERVER_KEY" in done.stderr and done.stdout == ""
    weak = run_cli("--db", "postgresql+psycopg://nobody:x@127.0.0.1:1/none", "team", "create", "X", server_key="00" * 32)
    assert weak.returncode == 2 and "too weak" in weak.stderr and "00" * 32 not in weak.stderr


def test_cli_unreachable_database_is_one_line() -> None:
    done = run_cli("--db", "postgresql+psycopg://nobody:x@127.0.0.1:1/none", "team", "create", "X")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.postgres
def test_two_processes_on_one_postgres_push_concurrently() -> None:
    if not PG_URL:
        pytest.skip("OUTREACH_TEST_PG_URL is not set")
    with pg_schema(PG_URL) as url:
        servers = [ServerProcess(url), ServerProcess(url)]
        with ThreadPoolExecutor(2) as pool:  # both start (and migrate) at once
            list(pool.map(lambda server: server.start(), servers))
        try:
            wires = [Wire(server.url) for server in servers]
            coord = wires[0].found(create_team(url, "Unit"))
            devices = [wires[i % 2].worker(coord, f"phone {i}") for i in range(4)]

            # A long-poll on one process wakes up for a push through the other.
            waited: dict[str, Any] = {}
            poller = threading.Thread(
                target=lambda: waited.update(
                    wires[1].call("GET", "/v1/pull", coord["token"], params={"since": 0, "wait": 20})
                )
            )
            poller.start()
            time.sleep(0.5)
            first = op(1)
            wires[0].call("POST", "/v1/push", devices[0]["token"], json={"ops": [first]})
            poller.join(timeout=20)
            assert [o["op_id"] for o in waited["ops"]] == [first["op_id"]]

            batches, per_batch = 8, 20

            def push_all(index: int) -> list[str]:
                device, sent, seq = devices[index], [], 2 if index == 0 else 1
                for batch in range(batches):
                    ops = [op(seq + i) for i in range(per_batch)]
                    seq += per_batch
                    wire = wires[(index + batch) % 2]
                    assert (
                        wire.call("POST", "/v1/push", device["token"], json={"ops": ops})["accepted"]
                        == per_batch
                    )
                    again = wires[(index + batch + 1) % 2].call(
                        "POST", "/v1/push", device["token"], json={"ops": ops}
                    )
                    assert again["duplicates"] == per_batch
                    sent += [o["op_id"] for o in ops]
                return sent

            with ThreadPoolExecutor(len(devices)) as pool:
                sent = [first["op_id"]] + [
                    op_id for ids in pool.map(push_all, range(len(devices))) for op_id in ids
                ]
            stored = pull_all(wires[1], coord["token"])
            assert sorted(o["op_id"] for o in stored) == sorted(sent)  # each op stored once
            assert [o["seq"] for o in stored] == list(range(1, len(sent) + 1))  # contiguous, unique
            for device in devices:  # each device's ops keep its own order in the log
                own = [o["device_seq"] for o in stored if o["device_id"] == device["device_id"]]
                assert own == sorted(own)
        finally:
            for server in servers:
                server.stop()
