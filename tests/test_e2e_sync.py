"""End to end through the `outreach` CLI against a real `outreach-server` process on loopback, on
SQLite and on PostgreSQL (when OUTREACH_TEST_PG_URL names one; CI starts it): enrollment of a
coordinator and two workers, offline changes while the server is down, convergence, conflicts for
review on every device, a server that swaps a joining key, erasure, revocation with wipe, team
isolation, and no canary string in anything the server keeps.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, create_team, pg_schema

from app.cli import main

pytestmark = pytest.mark.e2e

PASS = "correct horse 42"

Cli = Callable[..., Any]


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "server").mkdir()
    if request.param == "postgres":
        base = os.environ.get("OUTREACH_TEST_PG_URL")
        if not base:
            if os.environ.get("CI_REQUIRE_SERVICES"):
                pytest.fail("OUTREACH_TEST_PG_URL is not set, but CI requires the PostgreSQL suite")
            pytest.skip("OUTREACH_TEST_PG_URL is not set (CI sets it)")
        with pg_schema(base) as url, ServerProcess(url, workdir=tmp_path / "server") as srv:
            yield srv
    else:
        with ServerProcess(workdir=tmp_path / "server") as srv:
            yield srv


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli("coord", "person", "add", ...)` runs the CLI on the data dir of device "coord" and
    returns its parsed --json output; `expect_fail=True` returns (exit code, stderr) instead."""
    monkeypatch.setenv("OUTREACH_PASSPHRASE", PASS)
    monkeypatch.setenv("OUTREACH_LANG", "en")  # the errors asserted below are the English ones

    def run(device: str, *args: str, expect_fail: bool = False) -> Any:
        capsys.readouterr()
        rc = main(["--data-dir", str(tmp_path / device), "--json", *args])
        out, err = capsys.readouterr()
        if expect_fail:
            assert rc != 0, f"expected failure of {args}, got {out}"
            return rc, err
        assert rc == 0, f"{device} {' '.join(args)} failed: {err}"
        return json.loads(out) if out.strip() else None

    return run


def enroll_team(cli: Cli, server: ServerProcess, workers: int = 2) -> list[str]:
    """A coordinator and `workers` workers, all active. Returns the device names."""
    code = create_team(server.db_url, "Vesterbro")
    cli("coord", "init", "--worker", "Coordinator")
    founded = cli("coord", "join", server.url, code)
    assert founded["role"] == "coordinator" and founded["founding"] and founded["recovery_code"]
    names = ["coord"]
    for n in range(workers):
        name = f"worker{n + 1}"
        invite = cli("coord", "invite")["code"]
        cli(name, "init", "--worker", f"Worker {n + 1}")
        joined = cli(name, "join", server.url, invite)
        assert joined["role"] == "worker" and joined["status"] == "pending"
        assert cli(name, "sync") == {"pending": True}
        names.append(name)
    report = cli("coord", "sync")
    assert report["admitted"] == workers
    for name in names[1:]:
        cli(name, "sync")
        assert cli(name, "status")["device_status"] == "active"
    return names


def snapshot(cli: Cli, device: str) -> dict[str, Any]:
    persons = sorted(cli(device, "person", "list"), key=lambda p: p["id"])
    for p in persons:
        p.pop("last_contact", None)
    contacts = sorted(cli(device, "contact", "list", "--limit", "1000"), key=lambda c: c["id"])
    conflicts = sorted(cli(device, "conflicts"), key=lambda c: (c["record_id"], c["field"]))
    return {"persons": persons, "contacts": contacts, "conflicts": conflicts}


def test_three_devices_converge_after_offline_changes(cli: Cli, server: ServerProcess) -> None:
    names = enroll_team(cli, server)
    shared = cli("coord", "person", "add", "--alias", "Store Søren", "--category", "street")["id"]
    for name in names:
        cli(name, "sync")
    assert all(any(p["id"] == shared for p in cli(n, "person", "list")) for n in names)

    server.stop()
    cli("coord", "person", "add", "--alias", "Lille Åse")
    cli("coord", "person", "edit", shared, "--status", "housed")
    w1 = cli("worker1", "person", "add", "--alias", "Bjørn med hunden")["id"]
    cli("worker1", "contact", "add", "--person", w1, "--place", "Halmtorvet", "--service", "food", "--note", "kaffe")
    cli("worker1", "person", "edit", shared, "--status", "closed")
    cli("worker2", "contact", "add", "--person", shared, "--kind", "drop_in", "--service", "sleeping_bag")
    cli("worker2", "person", "edit", shared, "--description", "grøn jakke")
    rc, err = cli("worker2", "sync", expect_fail=True)
    assert "connection" in err.lower()
    assert cli("worker2", "status")["pending_ops"] >= 2  # kept on the device

    server.start()
    for _ in range(2):
        for name in names:
            cli(name, "sync")

    snaps = [snapshot(cli, n) for n in names]
    assert snaps[0] == snaps[1] == snaps[2]
    persons = {p["id"]: p for p in snaps[0]["persons"]}
    assert len(persons) == 3
    assert persons[shared]["description"] == "grøn jakke"
    assert persons[shared]["status"] in ("housed", "closed")
    assert len(snaps[0]["contacts"]) == 2
    # the concurrent status change is waiting for review on every device, both values shown
    conflicts = snaps[0]["conflicts"]
    assert [(c["record_id"], c["field"]) for c in conflicts] == [(shared, "status")]
    assert {conflicts[0]["a"], conflicts[0]["b"]} == {"housed", "closed"}
    for name in names:
        assert cli(name, "status")["pending_ops"] == 0


def _swap_public_key(server: ServerProcess, device_id: str) -> None:
    """What a malicious server would do: replace a joining device's public key with its own."""
    evil = os.urandom(32)
    if server.db_url.startswith("sqlite"):
        conn = sqlite3.connect(server.db_url.split("///", 1)[1])
        with conn:
            assert conn.execute("UPDATE device SET public_key=? WHERE id=?", (evil, device_id)).rowcount == 1
        conn.close()
    else:
        import sqlalchemy

        engine = sqlalchemy.create_engine(server.db_url)
        with engine.begin() as conn:
            n = conn.execute(sqlalchemy.text("UPDATE device SET public_key=:k WHERE id=:i"), {"k": evil, "i": device_id})
            assert n.rowcount == 1
        engine.dispose()


def test_a_swapped_joining_key_is_caught_by_the_proof(cli: Cli, server: ServerProcess) -> None:
    code = create_team(server.db_url, "Team")
    cli("coord", "init")
    cli("coord", "join", server.url, code)
    cli("coord", "person", "add", "--alias", "Hemmelig")
    invite = cli("coord", "invite")["code"]
    created = cli("victim", "init")
    cli("victim", "join", server.url, invite)
    _swap_public_key(server, created["device_id"])

    report = cli("coord", "sync")
    assert report["admitted"] == 0 and report["rejected"] == 1
    devices = {d["device_id"]: d for d in cli("coord", "devices")["devices"]}
    assert devices[created["device_id"]]["status"] == "rejected"
    assert devices[created["device_id"]]["key_epoch"] is None  # nothing was wrapped for that key
    rc, err = cli("victim", "sync", expect_fail=True)
    assert "refused this device" in err
    assert cli("victim", "person", "list") == []


def test_erasure_reaches_every_device_and_revocation_wipes(cli: Cli, server: ServerProcess, tmp_path: Path) -> None:
    names = enroll_team(cli, server)
    pid = cli("worker1", "person", "add", "--alias", "Glemt Person")["id"]
    cli("worker1", "contact", "add", "--person", pid, "--note", "om bolig", "--follow-up", "2030-01-01")
    keep = cli("worker2", "person", "add", "--alias", "Bliver")["id"]
    for name in names + names:
        cli(name, "sync")
    assert all(any(p["id"] == pid for p in cli(n, "person", "list")) for n in names)

    erased = cli("coord", "erase", pid, "--yes")
    assert erased["records"] == 3  # person, contact, follow-up
    for name in names:
        cli(name, "sync")
    for name in names:
        assert [p["id"] for p in cli(name, "person", "list")] == [keep]
        assert cli(name, "contact", "list") == []
        assert cli(name, "search", "bolig")["contacts"] == []

    worker2_id = _local_id(cli, "worker2")
    assert cli("coord", "revoke", worker2_id)["epoch"] == 2
    rc, err = cli("worker2", "sync", expect_fail=True)
    assert "removed from the team" in err
    assert not any((tmp_path / "worker2").iterdir())  # wiped
    # the remaining worker gets the new epoch and keeps working with the team
    after = cli("coord", "person", "add", "--alias", "Efter")["id"]
    cli("coord", "sync")
    cli("worker1", "sync")
    cli("worker1", "person", "edit", after, "--description", "set efter revoke")
    cli("worker1", "sync")
    cli("coord", "sync")
    coord_persons = {p["id"]: p for p in cli("coord", "person", "list")}
    assert coord_persons[after]["description"] == "set efter revoke"


def test_a_retired_device_hands_over_then_leaves_and_a_lost_one_is_said_lost(
        cli: Cli, server: ServerProcess, tmp_path: Path) -> None:
    names = enroll_team(cli, server)
    worker1, worker2 = _local_id(cli, "worker1"), _local_id(cli, "worker2")
    kept = cli("worker1", "person", "add", "--alias", "Afleveret")["id"]  # never synced before the retire
    rc, err = cli("worker1", "retire", worker2, expect_fail=True)
    assert rc == 3  # the desk is the coordinator's
    assert cli("coord", "retire", worker1) == {"retiring": worker1}
    rc, err = cli("worker1", "sync", expect_fail=True)
    assert "retired" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "worker1").iterdir())  # cleared, after sending everything
    report = cli("coord", "sync")
    assert report["retired"] == 1
    assert any(p["id"] == kept for p in cli("coord", "person", "list"))
    statuses = {d["device_id"]: d["status"] for d in cli("coord", "devices")["devices"]}
    assert statuses[worker1] == "revoked"
    # a lost device: revoked at once, and the coordinator is told since when its work is lost
    revoked = cli("coord", "revoke", worker2)
    assert revoked["keyed"] == [_local_id(cli, "coord")] and revoked["last_seen"]
    assert names


def _local_id(cli: Cli, device: str) -> str:
    return str(cli(device, "status")["device_id"])


def test_a_team_cannot_see_another_team(cli: Cli, server: ServerProcess, tmp_path: Path) -> None:
    code_a = create_team(server.db_url, "A")
    code_b = create_team(server.db_url, "B")
    cli("a", "init")
    cli("a", "join", server.url, code_a)
    cli("b", "init")
    cli("b", "join", server.url, code_b)
    pa = cli("a", "person", "add", "--alias", "Kun i A")["id"]
    pb = cli("b", "person", "add", "--alias", "Kun i B")["id"]
    cli("a", "sync")
    cli("b", "sync")
    cli("a", "sync")
    assert [p["id"] for p in cli("a", "person", "list")] == [pa]
    assert [p["id"] for p in cli("b", "person", "list")] == [pb]
    # A's coordinator purging B's record id changes nothing in B
    cli("a", "person", "add", "--alias", "decoy")
    assert [d["device_id"] for d in cli("a", "devices")["devices"]] == [_local_id(cli, "a")]
    _purge_foreign(tmp_path / "a", pb)
    cli("b", "sync")
    assert [p["id"] for p in cli("b", "person", "list")] == [pb]


def _purge_foreign(data_dir: Path, record_id: str) -> None:
    from models.workspace import Workspace
    from sync.engine import SyncEngine

    ws = Workspace(data_dir)
    ws.unlock(PASS)
    try:
        SyncEngine(ws).client().purge([record_id])
    finally:
        ws.close()


def _assert_not_in_postgres(url: str, needles: list[bytes]) -> None:
    """Every value of every row of every table of the server's schema, as bytes."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        tables = sqlalchemy.inspect(engine).get_table_names()
        assert "op" in tables
        with engine.connect() as conn:
            for table in tables:
                for row in conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        data = value if isinstance(value, bytes) else str(value).encode()
                        assert not any(n in data for n in needles), f"canary found in {table}"
    finally:
        engine.dispose()


def test_server_keeps_no_plaintext(cli: Cli, server: ServerProcess, tmp_path: Path) -> None:
    canary = "Kanariefugl-" + uuid.uuid4().hex[:12]
    names = enroll_team(cli, server, workers=1)
    pid = cli("worker1", "person", "add", "--alias", canary, "--name", canary + " Hansen",
              "--description", canary)["id"]
    cli("worker1", "contact", "add", "--person", pid, "--place", canary + " Plads", "--note", canary)
    for name in reversed(names):
        cli(name, "sync")
    assert any(p["alias"] == canary for p in cli("coord", "person", "list"))
    server.stop()
    needles = [canary.encode(), canary.lower().encode(), canary.encode("utf-16-le")]
    files = [p for p in server.workdir.rglob("*") if p.is_file()]
    assert server.log_path in files
    if server.db_url.startswith("sqlite"):
        assert any(p.name.endswith(".db") for p in files)
    else:
        _assert_not_in_postgres(server.db_url, needles)
    for path in files:
        data = path.read_bytes()
        assert not any(n in data for n in needles), f"canary found in {path.name}"
    for name in names:  # nor in what the CLI logged on the devices
        log = (tmp_path / name / "outreach.log").read_bytes()
        assert not any(n in log for n in needles)
