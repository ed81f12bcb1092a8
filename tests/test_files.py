"""This device's files are its user's alone (issue 15, item 5): the data folder 0700 and every file
in it 0600, the log included (it was created 0644, the folder 0755, beside a 0600 database), for
`make run` with its local server and for the CLI; folders and files of an earlier version are
tightened at start. `keep_private` never follows a link and never adds a bit.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from uihelpers import REPO_ROOT, free_port, printed_address

from app.files import keep_private

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes(root: Path) -> dict[str, str]:
    found = {".": oct(_mode(root))}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = oct(_mode(path))
    return found


def _open_to_others(root: Path) -> dict[str, str]:
    """Every folder that is not 0700 and every file that is not 0600 under `root` (itself included)."""
    wrong = {}
    for path in [root, *root.rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        if not path.is_symlink() and _mode(path) != want:
            wrong[str(path.relative_to(root))] = oct(_mode(path))
    return wrong


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A user's usual umask, put back afterwards (`keep_private` changes the process's)."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


@posix
def test_keep_private_tightens_what_is_there_and_what_comes(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True, mode=0o755)
    data.chmod(0o755)
    (data / "outreach.log").write_text("old log")
    (data / "outreach.log").chmod(0o644)
    (data / "app" / "outreach.db").write_text("x")
    (data / "app" / "outreach.db").chmod(0o664)
    (data / "tool.sh").write_text("#!/bin/sh\n")
    (data / "tool.sh").chmod(0o755)
    outside = tmp_path / "elsewhere.txt"  # a link in the data folder: its target is not ours to change
    outside.write_text("y")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)

    assert keep_private(data) == data

    assert _mode(data) == 0o700 and _mode(data / "app") == 0o700
    assert _mode(data / "outreach.log") == 0o600
    assert _mode(data / "app" / "outreach.db") == 0o600
    assert _mode(tmp_path / "data" / "tool.sh") == 0o700  # the owner keeps what it had
    assert _mode(outside) == 0o644
    (data / "new.log").write_text("z")
    (data / "new").mkdir()
    assert _mode(data / "new.log") == 0o600 and _mode(data / "new") == 0o700


@posix
def test_keep_private_creates_nothing(tmp_path: Path, umask_022: None) -> None:
    keep_private(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@posix
@pytest.mark.e2e
def test_make_run_keeps_the_data_folder_private(tmp_path: Path, umask_022: None) -> None:
    """`python -m app.run` with its local server under umask 022: the folder of an earlier version
    (0755, a 0644 log) is tightened, and everything the app and the server write is 0600/0700."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "app.log").write_text("from an earlier version\n")
    (data / "app.log").chmod(0o644)
    port, server_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "app.run", "--web", "--data-dir", str(data), "--port", str(port),
                                 "--server-port", str(server_port)], cwd=REPO_ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while printed_address(out.read_text()) is None:  # printed once the server answers and the app listens
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        written = {p.name for p in data.iterdir()}
        assert {"app.log", "server.db", "server.json", "server.log", "server.out"} <= written, written
        assert _open_to_others(data) == {}, _modes(data)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError("python -m app.run did not stop on SIGTERM") from None
    assert _open_to_others(data) == {}, _modes(data)  # what the server wrote as it stopped too


@posix
def test_the_cli_keeps_the_data_folder_private(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OUTREACH_PASSPHRASE": "correct horse battery staple 42"}
    for argv in (["init", "--worker", "Anna"], ["place", "add", "Nørreport St."]):
        done = subprocess.run([sys.executable, "-m", "app.cli", "--data-dir", str(data), *argv], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (data / "outreach.log").exists()
    assert _open_to_others(data) == {}, _modes(data)
