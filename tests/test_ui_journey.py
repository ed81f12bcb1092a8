"""The whole journey in two app instances against a real `outreach-server` process: the
coordinator joins with the operator's code and invites; a worker's device joins with that code and
sets its PIN; with the server down the worker adds a person and logs a contact (the chip says it
waits); the server comes back, the coordinator's sync lets the worker in, the worker's sync sends,
and the coordinator sees the contact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, create_team
from uihelpers import PHONE, UI, AppProcess, T, browser  # noqa: F401  (browser is a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

COORDINATOR_PIN = "246810"
WORKER_PIN = "135790"


def _join(ui: UI, code: str, pin: str, name: str) -> None:
    ui.expect("setup-code")
    assert not ui.has("setup-server")  # the address came with the app: folded under "Avanceret"
    ui.fill("setup-code", code)
    ui.fill("setup-name", name)
    ui.fill("setup-pin", pin)
    ui.fill("setup-pin-again", pin)
    ui.click("setup-join")
    ui.expect("setup-joined", timeout=60)


def test_join_invite_log_offline_and_see_it_on_the_coordinator(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        code = create_team(server.db_url, "Vesterbro")
        with AppProcess(tmp_path / "coordinator", server_url=server.url) as coord_app, \
                AppProcess(tmp_path / "worker", server_url=server.url) as worker_app:
            # the coordinator founds the team and sees the recovery code once
            coord = UI(browser, coord_app.url, size=PHONE)
            _join(coord, code, COORDINATOR_PIN, "Kim")
            assert T("role.coordinator") in coord.text("setup-joined")
            assert coord.text("setup-recovery")
            assert len(coord.text("setup-fingerprint").split()) == 5
            coord.click("setup-continue")
            coord.expect("new-contact")

            # ... and invites a device
            coord.nav("nav.settings")
            coord.click("settings-invite")
            invite = coord.text("invite-code").split()[0]
            assert invite.count("-") >= 2
            coord.click("invite-close")

            # the worker's device joins and waits to be let in
            worker = UI(browser, worker_app.url, size=PHONE)
            _join(worker, invite, WORKER_PIN, "Ali")
            assert T("role.worker") in worker.text("setup-joined")
            worker.wait_text(T("setup.pending"))
            worker.click("setup-continue")
            worker.expect("new-contact")
            worker.wait_id_text("sync-chip", T("sync.device_pending"))

            # no server: the worker adds a person and a place and logs a contact anyway
            server.stop()
            worker.click("new-contact")
            worker.type("nc-person-search", "Lange Peter")
            worker.wait_id_text("nc-new-person", "Lange Peter")
            worker.click("nc-new-person")
            worker.expect("nc-person-chosen")
            worker.fill("nc-new-place", "Nørreport St.")
            worker.fill("nc-note", "Talte om bolig")
            worker.click("service-food")
            worker.click("nc-save")
            worker.expect("new-contact")
            worker.wait_text("Lange Peter")
            # person + place + contact wait on the device; the chip says so
            worker.wait_id_text("sync-chip", T("sync.offline_waiting", n=3), timeout=45)

            # the server is back: the coordinator lets the worker in, the worker sends
            server.start()
            coord.nav("nav.today")
            coord.expect("new-contact")
            coord.click("sync-chip")
            coord.wait_id_text("sync-chip", T("sync.synced_at", time="").strip(), timeout=45)
            worker.click("sync-chip")
            worker.wait_id_text("sync-chip", T("sync.synced_at", time="").strip(), timeout=45)
            # on a sub-screen of a phone the chip is an icon: a tap says it in words
            worker.nav("nav.people")
            worker.click("sync-chip")
            worker.wait_id_text("toast", T("sync.synced_at", time="").strip(), timeout=45)

            # the coordinator's next sync brings the contact
            coord.click("sync-chip")
            coord.wait_text("Lange Peter", timeout=45)
            coord.wait_text("Nørreport St.")
            coord.wait_text("Talte om bolig")
            coord.close()
            worker.close()
