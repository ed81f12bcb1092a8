"""Issue 14, item 14: NUL bytes and terminal control characters are refused in every free-text
field (notes keep their line breaks and tabs), and what the CLI prints has them escaped (a record
from an older version or another device may still hold them); dates have sane bounds."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from clihelpers import PASS, Run, cli_runner

EVIL = ["\x00", "\x1b[2J", "\x07", "\r", "\x9b31m", "\x7f", "\x08"]


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch)


def _outbox(tmp_path: Path) -> int:
    conn = sqlite3.connect(tmp_path / "dev" / "outreach.db")
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def _refused(run: Run, flag: str, *args: str) -> None:
    rc, _out, err = run(*args)
    assert rc == 1, (args, err)
    assert err.count("\n") == 1 and flag in err and "control characters" in err, err
    assert not any(c in err for c in "\x00\x1b\x07\x9b\x7f\x08"), repr(err)  # the refusal does not echo them


@pytest.mark.parametrize("evil", EVIL)
def test_control_characters_are_refused_in_every_free_text_flag(run: Run, tmp_path: Path, evil: str) -> None:
    assert run("init", "--worker", "Bo")[0] == 0
    rc, pid, _ = run("person", "add", "--alias", "Bo")
    pid = pid.strip()
    before = _outbox(tmp_path)
    for flag, dest in (("--alias", "alias"), ("--name", "full_name"), ("--nationality", "nationality"),
                       ("--language", "languages"), ("--description", "description"),
                       ("--consent-scope", "consent_scope"), ("--icm-worker", "icm_worker"),
                       ("--safety-note", "safety_note")):
        _refused(run, flag, "person", "add", "--alias", "Ok", flag, f"a{evil}b") if dest != "alias" else \
            _refused(run, flag, "person", "add", "--alias", f"a{evil}b")
        _refused(run, flag, "person", "edit", pid, flag, f"a{evil}b")
    _refused(run, "--note", "contact", "add", "--person", pid, "--note", f"kaf{evil}fe")
    _refused(run, "--worker", "contact", "add", "--person", pid, "--worker", f"A{evil}li")
    _refused(run, "--place", "contact", "add", "--person", pid, "--place", f"Pa{evil}rk")
    _refused(run, "name", "place", "add", f"Pa{evil}rk")
    _refused(run, "--worker", "init", "--worker", f"B{evil}o")
    assert _outbox(tmp_path) == before  # nothing half-written


def test_notes_keep_line_breaks_and_tabs(run: Run) -> None:
    assert run("init")[0] == 0
    rc, out, err = run("--json", "contact", "add", "--anonymous", "--note", "first line\r\nsecond\tline")
    assert rc == 0, err
    rc, out, _ = run("--json", "contact", "list")
    assert json.loads(out)[0]["note"] == "first line\nsecond\tline"


def test_what_is_already_stored_is_escaped_on_output(run: Run, tmp_path: Path) -> None:
    """A record written by an older version, or synced from a device that did not check."""
    from models.domain.vocab import RecordType
    from models.workspace import Workspace

    assert run("init")[0] == 0
    ws = Workspace(tmp_path / "dev")
    ws.unlock(PASS)
    with ws._transaction():  # past the validation, as an older version wrote it
        pid = ws._new_id()
        ws._write(RecordType.PERSON, pid, {"alias": "Evil\x1b]0;owned\x07\x1b[2J\x00\x9b", "status": "active",
                                           "consent": "none", "description": "line\x1b[31m"})
        ws._write(RecordType.CONTACT, ws._new_id(), {"at": "2026-02-04T21:00:00", "person_id": pid,
                                                     "note": "x\x1b[5m\x00", "kind": "street"})
    ws.close()
    for args in (("person", "list"), ("person", "show", pid), ("contact", "list"), ("search", "Evil"),
                 ("access", pid)):
        rc, out, err = run(*args)
        assert rc == 0, err
        assert not any(c in out for c in "\x00\x1b\x07\x9b"), (args, repr(out))
        assert "\\x1b" in out, (args, out)
        rc, out, err = run("--json", *args)
        assert rc == 0, err
        assert not any(c in out for c in "\x00\x1b\x07\x9b"), (args, repr(out))
        json.loads(out)  # valid JSON, the values kept as JSON escapes
        assert "\\u001b" in out, (args, out)


@pytest.mark.parametrize(("args", "flag"), [
    (("contact", "add", "--anonymous", "--at", "9999-12-31T10:00"), "--at"),
    (("contact", "add", "--anonymous", "--at", (datetime.now() + timedelta(days=2)).isoformat(timespec="minutes")),
     "--at"),
    (("contact", "add", "--anonymous", "--at", "1850-06-01T10:00"), "--at"),
    (("contact", "add", "--anonymous", "--follow-up", "9999-12-31"), "--follow-up"),
    (("person", "add", "--alias", "X", "--birth-year", "2100"), "--birth-year"),
    (("person", "add", "--alias", "X", "--consent-date", "9999-12-31"), "--consent-date"),
    (("person", "add", "--alias", "X", "--status-date", "1066-10-14"), "--status-date"),
])
def test_dates_have_sane_bounds(run: Run, args: tuple[str, ...], flag: str) -> None:
    assert run("init")[0] == 0
    rc, _out, err = run(*args)
    assert rc == 1 and flag in err and err.count("\n") == 1, err
    rc, out, _ = run("--json", "contact", "list")
    assert json.loads(out) == []


def test_a_contact_a_few_hours_ahead_is_fine(run: Run) -> None:
    """A device's clock a little ahead, or a contact logged for later tonight."""
    assert run("init")[0] == 0
    soon = (datetime.now() + timedelta(hours=3)).isoformat(timespec="minutes")
    assert run("contact", "add", "--anonymous", "--at", soon)[0] == 0
