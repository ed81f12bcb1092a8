"""Issue 14, items 7 and 8: the desk is the coordinator's in the CLI as in the app (a worker's
device refuses overview, access, exports, ... with one line and exit code 3, and writes no file);
a contact saved on a device records the device's worker unless others are named, so the
coordinator's figures per worker count it; `export --worker` is not silently ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelpers import PASS, Run, cli_runner

from app.cli import EXIT_NOT_HERE, EXIT_USAGE
from models.workspace import Workspace


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch)


def _as(tmp_path: Path, role: str) -> None:
    """This device as a member of a team in `role` (what joining leaves in its settings)."""
    ws = Workspace(tmp_path / "dev")
    ws.unlock(PASS)
    ws.set_settings(team_id="c" * 32, role=role, device_status="active", server_url="http://127.0.0.1:9")
    ws.close()


DESK = [("overview",), ("report",), ("count",), ("duplicates",), ("retention",), ("audit",),
        ("conflicts", "resolve", "Bo", "status", "--keep", "a"),
        ("access", "Bo"), ("merge", "Bo", "Ali"), ("export", "persons", "--out", "{out}", "--yes"),
        ("export", "contacts", "--out", "{out}", "--yes"), ("invite",), ("devices",), ("erase", "Bo", "--yes"),
        ("revoke", "a" * 32), ("admit", "a" * 32, "1A2B")]


def test_a_worker_device_has_no_desk(run: Run, tmp_path: Path) -> None:
    assert run("init", "--worker", "Ali")[0] == 0
    for alias in ("Bo", "Ali"):
        assert run("person", "add", "--alias", alias)[0] == 0
    _as(tmp_path, "worker")
    out = tmp_path / "out" / "all.csv"
    out.parent.mkdir()
    for args in DESK:
        rc, stdout, err = run(*(a.format(out=out) for a in args))
        assert rc == EXIT_NOT_HERE, (args, err)
        assert err.count("\n") == 1 and "coordinator" in err, err
        assert stdout == ""
    assert not out.exists()
    # the field work goes on, and a worker sees the conflicts about what its device holds
    assert run("person", "list")[0] == 0
    assert run("conflicts")[0] == 0
    assert run("contact", "add", "--person", "Bo")[0] == 0


def test_the_coordinator_and_a_device_of_its_own_have_the_desk(run: Run, tmp_path: Path) -> None:
    assert run("init", "--worker", "Coordinator")[0] == 0
    assert run("person", "add", "--alias", "Bo")[0] == 0
    assert run("overview")[0] == 0  # not in a team: the data is this user's own
    _as(tmp_path, "coordinator")
    for args in (("overview",), ("access", "Bo"), ("audit",), ("conflicts",), ("duplicates",)):
        rc, _out, err = run(*args)
        assert rc == 0, (args, err)


def test_a_contact_records_the_devices_worker(run: Run, tmp_path: Path) -> None:
    assert run("init", "--worker", "Bo")[0] == 0
    assert run("person", "add", "--alias", "Søren", "--category", "street")[0] == 0
    assert run("contact", "add", "--person", "Søren")[0] == 0
    assert run("contact", "add", "--person", "Søren", "--worker", "Ali", "--worker", "Kim")[0] == 0
    rc, out, _ = run("--json", "contact", "list")
    assert sorted(tuple(c["workers"]) for c in json.loads(out)) == [("Ali", "Kim"), ("Bo",)]
    rc, out, err = run("--json", "overview", "--worker", "Bo")
    assert rc == 0, err
    assert json.loads(out)["met_this_year"] == 1


def test_export_has_no_worker_flag_to_ignore(run: Run, tmp_path: Path) -> None:
    assert run("init")[0] == 0
    rc, _out, err = run("export", "contacts", "--out", str(tmp_path / "c.csv"), "--yes", "--worker", "Bo")
    assert rc == EXIT_USAGE and "--worker" in err
    assert not (tmp_path / "c.csv").exists()
