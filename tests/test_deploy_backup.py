"""Backup and restore as an operator runs them (issue 18): scripts/backup-server.sh while the server
runs, the database lost, scripts/restore-server.sh, the server started again, and the team's real
devices (the `outreach` CLI) sync on without loss or duplication. On SQLite and, with
OUTREACH_TEST_PG_URL, on PostgreSQL.

What a restore cannot give back: ops acknowledged after the backup was taken. The restore advances
each team's log positions, so that devices which had read past the restored end see what is stored
from then on; the devices keep their records; the server notices a device that pushes past what it
holds and says so in its log. That the devices send the lost ops again needs a change in
sync/engine/ (see docs/DEPLOY.md, "Restore"): the second test holds what works today, not more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_e2e_sync as e2e
from serverproc import REPO_ROOT, ServerProcess
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_e2e_sync import Cli, enroll_team, snapshot
from test_pg_servers import START, fresh_schema

pytestmark = pytest.mark.e2e

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")
cli = e2e.cli  # the fixture: `cli(device, *args)` runs the `outreach` CLI on that device's data dir


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    workdir = tmp_path / "server"
    workdir.mkdir()
    if request.param == "sqlite":
        with ServerProcess(workdir=workdir, startup_timeout=START) as srv:
            yield srv
        return
    if not PG_URL:
        pytest.skip("OUTREACH_TEST_PG_URL is not set")
    with fresh_schema(PG_URL) as url, ServerProcess(url, workdir=workdir, startup_timeout=START) as srv:
        yield srv


def _script(name: str, db_url: str, backup: Path) -> str:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / name), "--db", db_url, str(backup)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    password = make_url(db_url).password
    assert not password or str(password) not in done.stdout + done.stderr  # never echoed
    return done.stdout


def _lose_the_database(server: ServerProcess) -> None:
    """The disaster: the server stops and its database is gone."""
    server.stop()
    if server.db_url.startswith("sqlite"):
        path = Path(server.db_url.split(":///", 1)[1])
        for lost in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.key")):
            lost.unlink(missing_ok=True)
        return
    schema = server.db_url.split("search_path%3D", 1)[1]
    admin = create_engine(PG_URL or "", poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # an empty database is what is left
    finally:
        admin.dispose()


def _stored_ops(server: ServerProcess) -> tuple[int, int]:
    engine = create_engine(server.db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(DISTINCT op_id) FROM op")).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


def _sync_all(cli: Cli, names: list[str], rounds: int = 2) -> None:
    for _ in range(rounds):
        for name in names:
            cli(name, "sync")


def test_backup_lost_database_restore_and_the_devices_sync_on(cli: Cli, server: ServerProcess,
                                                              tmp_path: Path) -> None:
    names = enroll_team(cli, server, workers=1)
    cli("coord", "person", "add", "--alias", "Store Søren", "--category", "street")
    person = cli("worker1", "person", "add", "--alias", "Bjørn med hunden")["id"]
    cli("worker1", "contact", "add", "--person", person, "--place", "Halmtorvet", "--service", "food")
    _sync_all(cli, names)
    before = snapshot(cli, "coord")
    assert snapshot(cli, "worker1") == before and len(before["persons"]) == 2
    stored = _stored_ops(server)

    backup = tmp_path / "team.dump"
    assert "backup written" in _script("backup-server.sh", server.db_url, backup)  # while it runs
    _lose_the_database(server)
    _script("restore-server.sh", server.db_url, backup)
    server.start()

    assert _stored_ops(server) == stored  # every op back, each once
    _sync_all(cli, names)
    for name in names:
        assert snapshot(cli, name) == before  # nothing lost, nothing doubled
        assert cli(name, "status")["pending_ops"] == 0
    # and the team works on: a change after the restore reaches the other device
    cli("worker1", "person", "add", "--alias", "Lille Åse")
    _sync_all(cli, names)
    after = snapshot(cli, "coord")
    assert len(after["persons"]) == 3 and snapshot(cli, "worker1") == after
    count, distinct = _stored_ops(server)
    assert count == distinct > stored[0]
    assert "past the log's end" not in server.log_path.read_text()


def test_after_a_restore_from_an_older_backup_the_team_works_on_and_the_server_says_what_it_lost(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    names = enroll_team(cli, server, workers=1)
    cli("coord", "person", "add", "--alias", "Store Søren")
    _sync_all(cli, names)
    backup = tmp_path / "team.dump"
    _script("backup-server.sh", server.db_url, backup)
    late = cli("worker1", "person", "add", "--alias", "Sent after the backup")["id"]
    _sync_all(cli, names)  # acknowledged, and pulled by the coordinator
    assert any(p["id"] == late for p in cli("coord", "person", "list"))

    _lose_the_database(server)
    assert "further" in _script("restore-server.sh", server.db_url, backup)
    server.start()
    _sync_all(cli, names, rounds=1)
    for name in names:  # the devices keep what the restored server lacks
        assert any(p["id"] == late for p in cli(name, "person", "list"))

    # Both devices had read the log past its restored end; its positions were advanced, so what is
    # stored now reaches them instead of hiding under positions they think they have read.
    after = cli("coord", "person", "add", "--alias", "After the restore")["id"]
    again = cli("worker1", "person", "add", "--alias", "Also after the restore")["id"]
    _sync_all(cli, names)
    for name in names:
        ids = {p["id"] for p in cli(name, "person", "list")}
        assert {after, again, late} <= ids
    # The worker learnt from its first pull that the server held its sequence only up to before
    # the backup's end, and sent the acknowledged ops after it again, as they were: the server holds
    # them anew (no device pushed past what it holds, so the operator's warning never fired), a
    # device that joins now (it never saw them) has them, and the worker says what happened.
    assert "acknowledged ops lost with a restore" not in server.log_path.read_text()
    invite = cli("coord", "invite")["code"]
    cli("newcomer", "init", "--worker", "Newcomer")
    cli("newcomer", "join", server.url, invite)
    cli("coord", "sync")
    cli("newcomer", "sync")
    assert late in {p["id"] for p in cli("newcomer", "person", "list")}
    told = [n for n in cli("worker1", "notices") if n["kind"] == "lost_on_server"]
    assert len(told) == 1 and "sent again" in told[0]["detail"]
    assert [n for n in cli("newcomer", "notices") if n["kind"] == "missing_ops"] == []
