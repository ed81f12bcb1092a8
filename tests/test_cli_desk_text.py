"""Issue 14, item 10: what the coordinator's commands print is read by a person: duplicates as a
table in words, follow-ups with their person and note, conflicts with who made each edit and a
way to settle one, retention with what can be done next, a goal that is reached said so; an
export does not overwrite a file unless told to; `sync --progress` keeps its lines apart when
not on a terminal, and a sync does not count the device's own changes as received."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelpers import Run, cli_runner, ok

from models.workspace import Workspace

PASS = "correct horse battery"  # tests/conftest.py's PASSPHRASE: make_team's devices are opened here


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch, passphrase=PASS)



def test_duplicates_as_a_table_in_words(run: Run) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Søren Jensen", "--birth-year", "1970")
    ok(run, "person", "add", "--alias", "Soeren Jensen", "--birth-year", "1970")
    text = ok(run, "duplicates")
    assert "{" not in text and "person_a" not in text and "score" not in text
    (row,) = [line for line in text.splitlines() if "Søren Jensen" in line]
    assert "Soeren Jensen" in row and "%" in row and "'" not in row
    assert "outreach merge" in text  # what can be done about it
    assert "birth year" in row.lower()
    assert json.loads(ok(run, "--json", "duplicates"))[0]["score"] > 0.6


def test_follow_ups_show_the_person_and_the_note(run: Run) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Bo")
    ok(run, "contact", "add", "--person", "Bo", "--note", "ring til jobcentret", "--follow-up", "2030-01-01")
    (line,) = ok(run, "followup", "list").splitlines()
    assert "Bo" in line and "ring til jobcentret" in line and "01-01-2030" in line


def test_conflicts_say_who_and_can_be_resolved(run: Run, tmp_path: Path,
                                                make_team: Callable[..., list[Workspace]],
                                                remote_ops: Callable[..., list]) -> None:
    a, b = make_team(2)
    a.set_worker_name("Ali")
    pid = a.add_person({"alias": "Kim"}).id
    b.apply_remote(remote_ops(a))
    seq_a, seq_b = a.store.meta("device_seq"), b.store.meta("device_seq")
    a.edit_person(pid, {"status": "housed"})
    b.edit_person(pid, {"status": "moved_away"})
    a.apply_remote(remote_ops(b, after_seq=int(seq_b or 0)))
    b.apply_remote(remote_ops(a, after_seq=int(seq_a or 0)))
    a.set_settings(desk_device_names=json.dumps({b.device_id: "Bo's phone"}))
    assert len(a.conflicts()) == 1
    a.close()
    b.close()
    text = ok(run, "conflicts", data_dir="device0")
    (line,) = [x for x in text.splitlines() if "status" in x]
    assert "Kim" in line and "housed" in line and "moved_away" in line
    assert "Ali" in line and "Bo's phone" in line
    rc, _out, err = run("conflicts", "resolve", "Kim", "status", data_dir="device0")
    assert rc != 0 and err.count("\n") == 1 and "--keep" in err
    out = ok(run, "conflicts", "resolve", "Kim", "status", "--value", "housed", data_dir="device0")
    assert "housed" in out
    assert ok(run, "--json", "conflicts", data_dir="device0").strip() == "[]"
    assert json.loads(ok(run, "--json", "person", "show", "Kim", data_dir="device0"))["status"] == "housed"


def test_retention_says_what_to_do_next(run: Run, tmp_path: Path) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Gammel")
    ok(run, "contact", "add", "--person", "Gammel", "--at", "2020-01-01T10:00")
    text = ok(run, "retention", "--months", "24")
    assert "Gammel" in text
    assert "outreach retention --keep" in text and "--reason" in text and "outreach erase" in text


def test_a_reached_goal_is_said_so(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Bo", "--category", "street")
    text = ok(run, "overview", "--target", "100", "--baseline", "169")
    assert "0 to go" not in text and "goal is reached" in text
    monkeypatch.setenv("OUTREACH_LANG", "da")
    assert "målet er nået" in ok(run, "overview").lower()


def test_an_export_does_not_overwrite_without_force(run: Run, tmp_path: Path) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Bo")
    out = tmp_path / "out" / "persons.csv"
    out.parent.mkdir()
    out.write_text("the coordinator's own notes")
    rc, _stdout, err = run("export", "persons", "--out", str(out), "--yes")
    assert rc != 0 and err.count("\n") == 1 and "--force" in err
    assert out.read_text() == "the coordinator's own notes"
    ok(run, "export", "persons", "--out", str(out), "--yes", "--force")
    assert "Bo" in out.read_text(encoding="utf-8-sig")


def test_sync_lines_apart_and_own_changes_not_received(run: Run, tmp_path: Path) -> None:
    from serverproc import ServerProcess, create_team

    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        ok(run, "init", "--worker", "Coordinator")
        ok(run, "join", server.url, create_team(server.db_url, "Vesterbro"))
        for alias in ("Bo", "Ali", "Kim"):
            ok(run, "person", "add", "--alias", alias)
        rc, out, err = run("sync", "--progress")
        assert rc == 0, err
        assert "\r" not in err and err.endswith("\n")  # stderr is no terminal here: whole lines
        assert len(err.splitlines()) >= 1
        assert "received 0" in out, out
        report = json.loads(ok(run, "--json", "sync"))
        assert report["received"] == 0
