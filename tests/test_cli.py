"""The `outreach` CLI as a user meets it: one-line errors with a non-zero exit and nothing written,
--json output, the coordinator's desk commands, and no personal data in what it logs."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelpers import PASS, Run, cli_runner, ok


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI's text output (English: the words these tests look for; tests/test_cli_lang.py: Danish)."""
    return cli_runner(tmp_path, capsys, monkeypatch)


@pytest.fixture
def cli(run: Run) -> Callable[..., Any]:
    """The CLI's --json output, or with `fail=True` its one-line error."""

    def json_of(*args: str, fail: bool = False) -> Any:
        rc, out, err = run("--json", *args)
        if fail:
            assert rc != 0
            assert err.count("\n") == 1 and err.startswith("outreach: "), err
            return err
        assert rc == 0, err
        return json.loads(out) if out.strip() else None

    return json_of


def _outbox(tmp_path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "dev" / "outreach.db")
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def test_missing_vault_wrong_passphrase_and_bad_input(cli: Callable[..., Any], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert "outreach init" in cli("person", "list", fail=True)
    cli("init")
    pid = cli("person", "add", "--alias", "Bo")["id"]
    before = _outbox(tmp_path)
    assert "category" in cli("person", "add", "--alias", "X", "--category", "castle", fail=True)
    assert "follow-up" in cli("contact", "add", "--person", pid, "--follow-up", "31-12-2026", fail=True)
    assert "no person" in cli("contact", "add", "--person", "f" * 32, fail=True).lower()
    assert "birth-year" in cli("person", "add", "--alias", "Y", "--birth-year", "old", fail=True)
    assert _outbox(tmp_path) == before  # nothing half-written
    monkeypatch.setenv("OUTREACH_PASSPHRASE", "not the passphrase")
    assert "Wrong passphrase" in cli("person", "list", fail=True)


def test_console_script_runs_and_exits_nonzero_on_error(tmp_path: Path) -> None:
    env = {"OUTREACH_PASSPHRASE": PASS, "PATH": "/usr/bin:/bin", "OUTREACH_LANG": "en"}
    run = subprocess.run([sys.executable, "-m", "app.cli", "--data-dir", str(tmp_path / "d"), "person", "list"],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent)
    assert run.returncode == 1 and run.stderr.startswith("outreach: No Outreach data")


def test_desk_commands(cli: Callable[..., Any], tmp_path: Path) -> None:
    cli("init", "--worker", "Coordinator")
    pid = cli("person", "add", "--alias", "Søren", "--category", "street", "--cpr", "010170-1234")["id"]
    cli("contact", "add", "--person", pid, "--at", "2026-02-04T21:00", "--place", "Halmtorvet", "--note", "kaffe")
    cli("contact", "add", "--person", pid, "--at", "2026-02-05T21:00", "--place", "Halmtorvet")
    ov = cli("overview", "--target", "90")
    assert ov["goal"]["target"] == 90 and ov["goal"]["current"] == 1
    count = cli("count", "--year", "2026", "--week", "6")
    assert count["total"] == 1 and count["counts"]["street"] == 1  # two contacts, counted once
    # exports: confirmation required, never beside the encrypted data, Danish Excel when written
    out = tmp_path / "export" / "contacts.csv"
    out.parent.mkdir()
    assert "--yes" in cli("export", "contacts", "--out", str(out), fail=True)
    assert not out.exists()
    assert "encrypted data" in cli("export", "contacts", "--out", str(tmp_path / "dev" / "x.csv"), "--yes", fail=True)
    assert cli("export", "contacts", "--out", str(out), "--yes")["rows"] == 2
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig")), delimiter=";"))
    assert rows[1][1] == "04-02-2026 21:00"
    actions = [e["action"] for e in cli("audit")]
    assert "export" in actions
    access = cli("access", pid[:8])
    assert access["person"]["alias"] == "Søren" and len(access["contacts"]) == 2


def test_cli_log_holds_no_personal_data(cli: Callable[..., Any], tmp_path: Path) -> None:
    canary = "Kanarie" + uuid.uuid4().hex[:10]
    cli("init", "--worker", canary)
    pid = cli("person", "add", "--alias", canary, "--description", canary)["id"]
    cli("contact", "add", "--person", pid, "--note", canary, "--place", canary)
    cli("person", "show", pid)
    cli("search", canary)
    cli("person", "add", "--alias", canary, "--category", canary, fail=True)
    log = (tmp_path / "dev" / "outreach.log").read_text(encoding="utf-8")
    assert pid in log  # it does log: ids and what happened
    assert canary not in log and canary.lower() not in log


def test_devices_show_each_fingerprint(cli: Callable[..., Any], tmp_path: Path, run: Run) -> None:
    from serverproc import ServerProcess, create_team

    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        cli("init", "--worker", "Coordinator")
        joined = cli("join", server.url, create_team(server.db_url, "Vesterbro"))
        cli("invite")
        listed = cli("devices")
        (me,) = listed["devices"]
        assert me["fingerprint"] == joined["fingerprint"]  # the figure the device's own screen shows
        assert listed["open_invites_here"] == 1
        text = ok(run, "devices")
        assert f"fingerprint {joined['fingerprint']}" in text and "open invites here: 1" in text


def test_notices_list_what_this_device_refused(cli: Callable[..., Any], tmp_path: Path, run: Run) -> None:
    from models.workspace import Workspace

    cli("init")
    assert cli("notices") == []
    assert ok(run, "notices").strip() == "No notices."
    assert "security notices" not in ok(run, "status")
    ws = Workspace(tmp_path / "dev")
    ws.unlock(PASS)
    record, device = "a" * 32, "b" * 32
    ws.add_notice("purge_refused", record, device, "an erasure without the coordinator's signature: ignored")
    ws.add_notice("future_op", "c" * 32, device, "stamped in the future")
    ws.close()

    listed = cli("notices")
    assert [n["kind"] for n in listed] == ["purge_refused", "future_op"]
    assert (listed[0]["record_id"], listed[0]["device_id"]) == (record, device)
    assert listed[0]["at"] and "signature" in listed[0]["detail"]
    text = ok(run, "notices")
    first = text.splitlines()[0]
    assert "purge_refused" in first and record in first and f"device {device[:8]} " in first
    assert "signature" in first and device not in first  # the device id short
    assert cli("status")["notices"] == 2
    assert "security notices: 2 (see 'outreach notices')" in ok(run, "status")
    assert "notices" in ok(run, "--help")


def test_admit_after_comparing_the_fingerprint(cli: Callable[..., Any], tmp_path: Path, run: Run) -> None:
    from serverproc import ServerProcess, create_team

    from models.workspace import Workspace
    from sync.engine import SyncEngine

    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        cli("init", "--worker", "Coordinator")
        me = cli("join", server.url, create_team(server.db_url, "Vesterbro"))
        assert cli("devices")["confirms_devices"] is False
        assert cli("devices", "--confirm-devices", "on")["confirms_devices"] is True
        ws = Workspace(tmp_path / "ali", fast_kdf=True)
        ws.init("worker passphrase 1", worker_name="ali")
        eng = SyncEngine(ws)
        eng.join(server.url, cli("invite")["code"], device_name="ali")

        assert cli("sync")["admitted"] == 0  # its proof checks, yet it waits for the comparison
        listed = cli("devices")
        ali = next(d for d in listed["devices"] if d["name"] == "ali")
        assert ali["status"] == "pending" and ali["awaiting_confirmation"] is True
        assert [d["awaiting_confirmation"] for d in listed["devices"] if d is not ali] == [False]
        text = ok(run, "devices")
        assert "compare fingerprints before a device is let in: on" in text
        (row,) = [line for line in text.splitlines() if line.startswith(ali["device_id"])]
        assert f"WAITING: compare the fingerprint on its screen, then 'outreach admit {ali['device_id']}" in row

        assert "fingerprint" in cli("admit", ali["device_id"], "not-hex!", fail=True)
        assert "20 characters" in cli("admit", ali["device_id"], "1A2B", "3C4D", fail=True)
        assert "no device" in cli("admit", "f" * 32, *ws.fingerprint().split(), fail=True)
        assert "fingerprints differ" in cli("admit", ali["device_id"], *me["fingerprint"].split(), fail=True)
        assert eng.sync().pending  # not let in

        # the groups as the phone shows them, each its own word on the command line; a prefix of the id
        out = ok(run, "admit", ali["device_id"][:8], *ws.fingerprint().lower().split())
        assert out.startswith(f"Let in {ali['device_id']} (ali)")
        assert not eng.sync().pending
        listed = cli("devices")
        ali = next(d for d in listed["devices"] if d["name"] == "ali")
        assert ali["status"] == "active" and ali["awaiting_confirmation"] is False
        assert "does not wait" in cli("admit", ali["device_id"], *ws.fingerprint().split(), fail=True)
        bo = Workspace(tmp_path / "bo", fast_kdf=True)
        bo.init("worker passphrase 2", worker_name="bo")
        joined = SyncEngine(bo).join(server.url, cli("invite")["code"], device_name="bo")
        bo_id = bo.device_id
        admitted = cli("admit", bo_id, joined.fingerprint)  # --json; the fingerprint quoted as one word
        assert (admitted["device_id"], admitted["name"], admitted["status"]) == (bo_id, "bo", "active")
        assert admitted["fingerprint"] == bo.fingerprint() and admitted["admitted"] == 1
        bo.close()
        assert cli("devices", "--confirm-devices", "off")["confirms_devices"] is False
        assert "comparing is off" in cli("admit", ali["device_id"], *ws.fingerprint().split(), fail=True)
        assert "--confirm-devices" in ok(run, "devices", "--help")
        ws.close()


def test_checkpoint_is_written_by_the_coordinator_and_taken_by_a_new_device(
        cli: Callable[..., Any], tmp_path: Path, run: Run) -> None:
    from serverproc import ServerProcess, create_team

    def new_device(*args: str) -> Any:
        rc, out, err = run("--json", *args, data_dir="new")
        assert rc == 0, err
        return json.loads(out) if out.strip() else None

    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        cli("init", "--worker", "Coordinator")
        cli("join", server.url, create_team(server.db_url, "Vesterbro"))
        for n in range(3):
            cli("person", "add", "--alias", f"Person {n}")
        written = cli("checkpoint")
        assert written["seq"] > 0 and written["parts"] >= 2
        assert ok(run, "checkpoint").startswith("No checkpoint written")  # nothing new since
        code = cli("invite")["code"]
        new_device("init", "--worker", "New")
        new_device("join", server.url, code)
        cli("sync")  # the coordinator lets it in
        taken = re.search(r", (\d+) records from a checkpoint", ok(run, "sync", data_dir="new"))
        assert taken is not None and int(taken[1]) >= 3  # the persons, and the audit trail of their creation
        assert sorted(p["alias"] for p in new_device("person", "list")) == [f"Person {n}" for n in range(3)]
        rc, _out, err = run("checkpoint", data_dir="new")  # a worker's device writes none
        assert rc != 0 and "coordinator" in err
