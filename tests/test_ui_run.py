"""`make run` (`python -m app.run`): a local server on SQLite, a team made on first run, and the app
in web mode on loopback, answering only the address it prints (with this launch's key). A
first-time user gets to a logged contact with nothing but a PIN; a tab without the key never sees
the team's founding code; the data folder stays the user's alone."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from uihelpers import PHONE, REPO_ROOT, UI, T, browser, free_port, printed_address  # noqa: F401

from app.run import RESTART_FIRST_PAUSE, LocalServer, has_display

pytestmark = pytest.mark.e2e


def test_display_detection() -> None:
    assert has_display({"DISPLAY": ":0"}) or sys.platform != "linux"
    if sys.platform == "linux":
        assert not has_display({})


def test_the_server_port_is_remembered(tmp_path: Path) -> None:
    first = LocalServer(tmp_path, port=free_port())
    first._settings.write_text(json.dumps({"port": first.port}))
    assert LocalServer(tmp_path).port == first.port


@pytest.mark.browser
def test_make_run_to_a_logged_contact(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    port, server_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "app.run", "--data-dir", str(tmp_path / "data"),
                                 "--port", str(port), "--server-port", str(server_port)],
                                cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its server too can be stopped as a group
    try:
        deadline = time.monotonic() + 60
        while printed_address(out.read_text()) is None:  # printed once the app's socket listens
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        said = out.read_text()
        address = printed_address(said)
        assert address and re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?key=[A-Za-z0-9_-]{{43}}", address), said
        assert f"http://127.0.0.1:{server_port}" in said
        code = re.search(r"filled in for you: (\S+)", said)
        assert code, said

        stranger = browser.new_context()  # the address without its key: no app, no founding code
        refused = stranger.new_page().goto(f"http://127.0.0.1:{port}/")
        assert refused is not None and refused.status == 403 and code.group(1) not in refused.text()
        stranger.close()

        ui = UI(browser, address, size=PHONE)
        ui.expect("setup-pin")
        assert ui.value("setup-code") == code.group(1)
        # the address came with `make run`: folded under "Avanceret", the code is all a user types
        assert not ui.has("setup-server")
        ui.click("setup-advanced")
        assert ui.value("setup-server") == f"http://127.0.0.1:{server_port}"
        # no keystore on this machine: the screen says so, and a PIN alone is not enough for a copy
        ui.wait_id_text("setup-protection", T("setup.protection.passphrase"))
        ui.fill("setup-pin", "246810")
        ui.fill("setup-pin-again", "246810")
        ui.click("setup-join")
        ui.wait_text(T("errors.pin_offline"))
        assert not (tmp_path / "data" / "app" / "outreach.db").exists()
        ui.fill("setup-pin", "hest bord cykel regn")
        ui.fill("setup-pin-again", "hest bord cykel regn")
        ui.click("setup-join")
        ui.expect("setup-recovery", timeout=60)
        # the founding coordinator is told what it compares, not that "the coordinator" compares
        ui.wait_text(T("setup.fingerprint_hint_coordinator"))
        assert T("setup.fingerprint_hint") not in ui.page.content()
        ui.click("setup-continue")
        ui.click("new-contact")
        ui.type("nc-person-search", "Lange Peter")
        ui.wait_id_text("nc-new-person", "Lange Peter")
        ui.click("nc-new-person")
        ui.click("nc-save")
        ui.wait_text("Lange Peter")
        ui.click("sync-chip")
        ui.wait_id_text("sync-chip", T("sync.synced_at", time="").strip(), timeout=45)
        ui.close()
        assert (tmp_path / "data" / "app" / "outreach.db").exists()
        assert (tmp_path / "data" / "server.db").exists()
        data = tmp_path / "data"
        open_to_others = {str(p.relative_to(data)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [data, *data.rglob("*")]
                          if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)}
        assert open_to_others == {}  # the data folder 0700, every file in it 0600 (issue 15)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError("python -m app.run did not stop on SIGTERM") from None
    # the local server went down with the app
    assert LocalServer(tmp_path / "data").port == server_port
    from app.run import port_free
    deadline = time.monotonic() + 10
    while not port_free(server_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert port_free(server_port)


def _state(pid: int) -> str | None:
    """A process's state letter ("Z": a zombie nobody reaped), None once it is gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_server_that_stops_is_reaped_started_again_and_stopped_with_the_app(tmp_path: Path) -> None:
    """Issue 16, item 14: a server killed under `make run` stayed `<defunct>`, and the app had none."""
    said: list[str] = []
    server = LocalServer(tmp_path, port=free_port(), say=said.append)
    server.start()
    try:
        first = server.process
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (server.process is first or _state(first.pid) is not None) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _state(first.pid) is None  # reaped: no zombie left behind
        while not any("running again" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = server.process
        assert second is not None and second is not first and second.poll() is None
        assert said == [f"Outreach server stopped (stopped by SIGKILL); starting it again. Its log: {server.log_path}",
                        f"Outreach server is running again: {server.url}"]
    finally:
        server.stop()
    assert second.returncode is not None and _state(second.pid) is None  # stopped with the app, and reaped
    time.sleep(RESTART_FIRST_PAUSE + 0.5)
    assert server.process is None  # and not started again after the app stopped it


def test_make_run_prints_only_what_the_user_needs(tmp_path: Path) -> None:
    """Issue 16, item 15: the address, the team code, where the data is and how to stop; nothing else."""
    port, server_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    data = tmp_path / "data"
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "app.run", "--web", "--data-dir", str(data), "--port", str(port),
                                 "--server-port", str(server_port)], cwd=REPO_ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Stop with" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    lines = out.read_text().splitlines()
    patterns = [
        rf"Outreach server: http://127\.0\.0\.1:{server_port}",
        r"First run: the team code is filled in for you: [A-Z0-9-]{30,}",
        rf"Your data: {re.escape(str(data))}  \(the app's in app/, the server's in server\.db; "
        r"logs: app\.log, server\.log\)",
        rf"Open the app in your browser: http://127\.0\.0\.1:{port}/\?key=\S+",
        r"Stop with Ctrl\+C \(the server stops with the app\)\.",
    ]
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


_NOISY_PIP = """#!/bin/sh
# a stand-in for the venv's python: pip talks as setuptools does on a first editable install
case "$*" in
  *"pip install"*)
    echo "/x/setuptools/command/editable_wheel.py:349: InformationOnly: Editable installation." >&2
    echo '  with strategy, WheelFile(wheel_path, "w") as wheel_obj:' >&2
    echo "********************************************************************************" >&2
    [ -n "$FAIL_INSTALL" ] && case "$*" in *-e*) echo "ERROR: no matching distribution" >&2; exit 1;; esac ;;
esac
exit 0
"""


def _set_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`make`'s first-run setup of the virtualenv (its `$(STAMP)` target) with a stand-in python."""
    import hashlib
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make here")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(_NOISY_PIP)
    (venv / "bin" / "python").chmod(0o755)
    stamp = venv / (".installed-" + hashlib.sha1((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12])  # noqa: S324
    return subprocess.run(["make", "--no-print-directory", f"VENV={venv}", str(stamp)], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_the_first_setup_says_one_line_not_pips_warnings(tmp_path: Path) -> None:
    """Issue 16, item 15: setuptools' warning block and a stray `with strategy, WheelFile(...)` line
    read like errors to a new user; they go to the install's log."""
    done = _set_up(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    venv = tmp_path / "venv"
    assert (done.stdout + done.stderr).splitlines() == [
        f"Setting up {venv} (first run or a changed pyproject.toml; a few minutes; details in {venv}/install.log)"]
    assert "WheelFile" in (venv / "install.log").read_text()


def test_a_failed_setup_shows_the_end_of_its_log(tmp_path: Path) -> None:
    done = _set_up(tmp_path, FAIL_INSTALL="1")
    assert done.returncode != 0
    assert "ERROR: no matching distribution" in done.stdout
    assert f"Setting up {tmp_path / 'venv'} failed: see {tmp_path / 'venv'}/install.log" in done.stdout
