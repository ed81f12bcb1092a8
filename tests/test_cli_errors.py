"""Issue 14, items 5 and 13: whatever goes wrong, the `outreach` CLI ends in one line on stderr
with an exit code of its own (documented in --help), never in a Python traceback, and the data
is left as it was: a damaged or full store, a data folder that cannot be written or is a file,
hours that are not hours, values outside a vocabulary, and pydantic's own words."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Run, cli_runner

from app.cli import EXIT_DAMAGED, EXIT_DISK_FULL, EXIT_FILES, EXIT_USAGE


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("outreach: "), err
    assert "Traceback" not in err and "sqlite3" not in err, err
    return err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_damaged_store_is_named_with_what_to_do(run: Run, tmp_path: Path) -> None:
    assert run("init", "--worker", "Bo")[0] == 0
    assert run("demo", "--persons", "30", "--contacts", "300")[0] == 0
    good = tmp_path / "dev"
    _checkpoint(good / "outreach.db")
    damaged_seen = 0
    for n, fraction in enumerate((0.0005, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9)):
        copy = tmp_path / f"copy{n}"
        shutil.copytree(good, copy)
        db = copy / "outreach.db"
        with open(db, "r+b") as fh:  # a bad disk: bytes overwritten in the middle of the file
            fh.seek(max(100, int(db.stat().st_size * fraction)))
            fh.write(b"\xa5" * 4096)
        for args in (("person", "list"), ("person", "add", "--alias", "Ny")):
            size = db.stat().st_size
            rc, _out, err = run(*args, data_dir=copy)
            if rc != 0:
                assert rc == EXIT_DAMAGED, err
                line = one_line(err).lower()
                assert "damaged" in line and "restore" in line and "server" in line, line
                assert db.stat().st_size >= size, (fraction, args)  # kept for a rescue, never wiped
                damaged_seen += 1
    assert damaged_seen >= 4


def test_a_full_disk_is_one_line_and_nothing_half_written(run: Run, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from models.storage import store

    assert run("init")[0] == 0
    real = store.Store.__init__

    def full(self: Any, path: Path) -> None:  # the file may grow no further: SQLite's SQLITE_FULL
        real(self, path)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(store.Store, "__init__", full)
    rc, err = 0, ""
    for i in range(400):
        rc, _out, err = run("person", "add", "--alias", f"P{i}", "--description", "x" * 3000)
        if rc:
            break
    assert rc == EXIT_DISK_FULL, err
    assert "full" in one_line(err)
    monkeypatch.setattr(store.Store, "__init__", real)
    rc, out, _err = run("--json", "person", "list")
    assert rc == 0 and out.count('"alias"') == i  # every saved person is there, the failed one not


def test_a_full_disk_while_exporting(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.usecases import exports

    assert run("init")[0] == 0

    def no_space(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(exports, "write_private", no_space)
    rc, _out, err = run("export", "contacts", "--out", str(tmp_path / "c.csv"), "--yes")
    assert rc == EXIT_DISK_FULL and "full" in one_line(err)


def test_a_data_dir_that_is_a_file(run: Run, tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    for args in (("person", "list"), ("init",), ("status",)):
        rc, _out, err = run(*args, data_dir=afile)
        assert rc == EXIT_FILES, err
        assert str(afile) in one_line(err) and "not a folder" in err
    assert afile.read_text() == "not a folder"


def test_a_read_only_data_folder(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("init")[0] == 0
    assert run("person", "add", "--alias", "Bo")[0] == 0
    data = tmp_path / "dev"
    _checkpoint(data / "outreach.db")
    before = _digest(data / "outreach.db")
    if os.geteuid() != 0:
        for f in data.iterdir():
            f.chmod(0o444)
        data.chmod(0o555)
    else:  # root writes anywhere: the folder's refusals, as the OS gives them to others
        import logging

        from models.storage import store

        def refuse_log(self: Any) -> Any:
            raise PermissionError(errno.EACCES, "Permission denied", self.baseFilename)

        real_connect = sqlite3.connect

        def read_only(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            return real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

        monkeypatch.setattr(logging.FileHandler, "_open", refuse_log)
        monkeypatch.setattr(store.sqlite3, "connect", read_only)
    try:
        for args in (("person", "list"), ("person", "add", "--alias", "Ny")):
            rc, out, err = run(*args)
            assert rc in (0, EXIT_FILES), err
            if rc:
                assert str(data) in one_line(err) and "write" in err
            else:
                assert "Bo" in out
    finally:
        data.chmod(0o755)
        for f in data.iterdir():
            f.chmod(0o600)
    assert _digest(data / "outreach.db") == before


@pytest.mark.parametrize("hours", ["-1", "0", "1e9", "nan", "inf", "soon"])
def test_invite_hours_are_hours(run: Run, hours: str) -> None:
    rc, _out, err = run("invite", "--hours", hours)
    assert rc == EXIT_USAGE
    assert "--hours" in one_line(err)


def test_exit_codes_are_documented(run: Run) -> None:
    rc, out, _err = run("--help")
    assert rc == 0
    for code in (1, EXIT_USAGE, EXIT_FILES, EXIT_DISK_FULL, EXIT_DAMAGED):
        assert f"  {code} " in out, out


# ----------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("args", [
    ("audit", "--action", "update"),
    ("person", "add", "--alias", "X", "--gender", "robot"),
    ("person", "add", "--alias", "X", "--category", "castle"),
    ("person", "list", "--status", "gone"),
    ("contact", "add", "--anonymous", "--service", "pizza"),
    ("contact", "add", "--anonymous", "--kind", "visit"),
    ("contact", "add", "--anonymous", "--living", "moon"),
    ("contact", "add", "--anonymous", "--referral", "nowhere"),
    ("person", "add", "--alias", "X", "--need", "wings"),
])
def test_every_vocabulary_flag_has_choices(run: Run, args: tuple[str, ...]) -> None:
    assert run("init")[0] == 0
    rc, _out, err = run(*args)
    assert rc == EXIT_USAGE, err
    assert "choose from" in one_line(err)


@pytest.mark.parametrize(("args", "flag", "words"), [
    (("contact", "add", "--anonymous", "--at", "2026-13-01T10:00"), "--at", "date and time"),
    (("contact", "add", "--anonymous", "--at", "yesterday"), "--at", "date and time"),
    (("person", "add", "--alias", "x" * 81), "--alias", "at most 80"),
    (("person", "add", "--alias", "X", "--birth-year", "1850"), "--birth-year", "1900"),
    (("person", "add", "--alias", "X", "--cpr", "12345"), "--cpr", "DDMMYY"),
    (("person", "add", "--alias", " "), "--alias", "empty"),
])
def test_pydantic_words_become_plain_words(run: Run, args: tuple[str, ...], flag: str, words: str) -> None:
    assert run("init")[0] == 0
    rc, _out, err = run(*args)
    assert rc == 1, err
    line = one_line(err)
    assert flag in line and words in line, line
    for jargon in ("Input should", "value is outside", "expected range", "String should", "pydantic", "type="):
        assert jargon not in line, line


def test_pydantic_words_in_danish(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("init")[0] == 0
    monkeypatch.setenv("OUTREACH_LANG", "da")
    rc, _out, err = run("contact", "add", "--anonymous", "--at", "2026-13-01T10:00")
    assert rc == 1 and "--at" in one_line(err) and "dato" in err and "month" not in err
