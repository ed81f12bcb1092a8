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

from app.run import LocalServer, has_display

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
