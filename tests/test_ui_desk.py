"""The coordinator's desk in a browser, against a real `outreach-server` process: a duplicate merged,
a conflict resolved, a person erased, a device invited and let in, and a device revoked, each
checked on a second device after it syncs (the worker's app in a second browser session, or a
device driven by the sync engine in this process). The team is enrolled before the apps start (as
the CLI would) so that the test spends its time on the desk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, create_team
from uihelpers import LAPTOP, PHONE, PIN, UI, AppProcess, T, browser  # noqa: F401  (browser is a fixture)

from models.workspace import Workspace
from sync.engine import SyncEngine

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

FIELD_PASS = "field device passphrase"


@dataclass
class Device:
    """A team member driven from this process (the phone of a worker who is not on screen)."""

    ws: Workspace
    engine: SyncEngine

    def close(self) -> None:
        self.engine.close()
        if self.ws.exists():
            self.ws.close()


def _device(path: Path, name: str, url: str, code: str, pin: str = FIELD_PASS) -> Device:
    ws = Workspace(path, fast_kdf=True)
    ws.init(pin, worker_name=name)
    engine = SyncEngine(ws)
    engine.join(url, code, device_name=name)
    return Device(ws, engine)


@dataclass
class Team:
    server: ServerProcess
    worker_id: str  # the device of the worker's app
    field: Device  # two more devices, for changes made elsewhere
    field2: Device
    ids: dict[str, str]  # alias -> person id


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        code = create_team(server.db_url, "Vesterbro")
        coord = _device(tmp_path / "coordinator", "Kim", server.url, code, pin=PIN)
        invites = [coord.engine.invite() for _ in range(3)]
        worker = _device(tmp_path / "worker", "Ali", server.url, invites[0], pin=PIN)
        field = _device(tmp_path / "field", "Felt", server.url, invites[1])
        field2 = _device(tmp_path / "field2", "Felt to", server.url, invites[2])
        coord.engine.sync()  # checks the three proofs, wraps the team key for them
        now = datetime.now()
        ids = {}
        for alias, year in (("Store Søren", 1970), ("Lange Peter", 1961), ("Maja", 1988)):
            ids[alias] = field.ws.add_person({"alias": alias, "birth_year": year, "category": "street"}).id
            field.ws.add_contact({"person_id": ids[alias], "at": (now - timedelta(days=3)).isoformat(),
                                  "note": f"Mødt ved stationen ({alias})"})
        # the same man registered again, offline, on another device
        ids["Store Soeren"] = field2.ws.add_person({"alias": "Store Soeren", "birth_year": 1970,
                                                    "category": "street"}).id
        field2.ws.add_contact({"person_id": ids["Store Soeren"], "at": (now - timedelta(days=1)).isoformat()})
        for dev in (worker, field, field2, coord, worker, field2):
            dev.engine.sync()
        worker_id = worker.ws.device_id
        coord.close()
        worker.close()
        try:
            yield Team(server, worker_id, field, field2, ids)
        finally:
            field.close()
            field2.close()


def _unlock(ui: UI) -> None:
    ui.fill("lock-pin", PIN)
    ui.click("lock-unlock")
    ui.expect("new-contact")


def _sync(ui: UI) -> None:
    """Tap the chip and wait for the run to end."""
    ui.page.bring_to_front()
    ui.click("sync-chip")
    time.sleep(0.5)
    ui.wait_id_text("sync-chip", T("sync.synced_at", time="").strip(), timeout=45)


def _person_count(ui: UI, n: int) -> None:
    ui.nav("nav.people")
    ui.wait_id_text("people-count", T("people.count", n=n), timeout=30)


def test_merge_resolve_erase_invite_and_revoke_reach_the_other_devices(team: Team, tmp_path: Path,
                                                                       browser: Any) -> None:  # noqa: F811
    with AppProcess(tmp_path / "coordinator", server_url=team.server.url) as coord_app, \
            AppProcess(tmp_path / "worker", server_url=team.server.url) as worker_app:
        coord = UI(browser, coord_app.url, size=LAPTOP)
        _unlock(coord)
        worker = UI(browser, worker_app.url, size=PHONE)
        _unlock(worker)
        assert not worker.page.get_by_role("tab", name=T("nav.desk")).count()  # the desk is the coordinator's
        _person_count(worker, 4)

        # ---- duplicate merge: the coordinator keeps one, the worker's device sees one after sync
        coord.nav("nav.desk")
        coord.expect("desk-goal")
        assert "4" in coord.text("desk-persons-known")
        coord.click("desk-tab-review")
        card = coord.text("review-duplicate-0")
        assert "Store Søren" in card and "Store Soeren" in card
        coord.click("review-duplicate-0-keep-a")
        coord.click("merge-confirm")
        coord.expect("review-no-duplicates")
        _sync(coord)
        _sync(worker)
        _person_count(worker, 3)
        assert worker.page.get_by_text("Store S", exact=False).count() == 1

        # ---- a conflict: two devices change Lange Peter's status without seeing each other
        peter = team.ids["Lange Peter"]
        team.field.engine.sync()
        team.field2.engine.sync()
        team.field.ws.edit_person(peter, {"status": "housed", "status_date": datetime.now().date().isoformat()})
        team.field2.ws.edit_person(peter, {"status": "moved_away"})
        team.field.engine.sync()
        team.field2.engine.sync()
        _sync(worker)  # the worker's device sees the conflict too
        worker.nav("nav.people")
        worker.page.get_by_text("Lange Peter").first.click()
        worker.expect("conflict-status")

        _sync(coord)
        coord.nav("nav.desk")
        coord.expect("desk-goal")  # the desk is drawn: a tap now is not lost
        coord.click("desk-tab-review")
        head = coord.text("review-conflict-0")
        assert "Lange Peter" in head
        coord.click("review-conflict-0-keep-a")
        coord.expect("review-no-conflicts")
        _sync(coord)
        kept = team.field.ws  # whichever side was "a", every device now holds one status and no conflict
        _sync(worker)
        worker.nav("nav.people")
        worker.page.get_by_text("Lange Peter").first.click()
        worker.expect("person-alias")
        deadline = time.monotonic() + 20
        while worker.has("conflict-status") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not worker.has("conflict-status")
        team.field.engine.sync()
        status = kept.get_person(peter).status.value
        assert status in ("housed", "moved_away") and not [c for c in kept.conflicts() if c.record_id == peter]
        worker.wait_text(T(f"status.{status}"))

        # ---- access request (art. 15): everything about Maja, readable and as files
        coord.nav("nav.people")
        coord.page.get_by_text("Maja").first.click()
        coord.click("person-access")
        assert "Mødt ved stationen (Maja)" in coord.text("access-document")
        out = tmp_path / "access"
        coord.fill("access-folder", str(out))
        coord.click("access-save")
        coord.wait_id_text("toast", T("access.saved", html="", json="", folder="").split()[0])
        saved = sorted(p.suffix for p in out.iterdir())
        assert saved == [".html", ".json"]
        assert "Mødt ved stationen (Maja)" in next(out.glob("*.json")).read_text(encoding="utf-8")

        # ---- erasure: Maja is purged on the server and on the worker's device (at the page's end)
        erase = coord.scroll_to("person-erase").bounding_box()
        timeline = coord.node("person-timeline").bounding_box()
        assert erase and timeline and erase["y"] > timeline["y"]  # after the timeline, far from "Ny kontakt"
        coord.click("person-erase")
        coord.fill("erase-typed", "Maj")
        coord.click("erase-confirm")
        coord.wait_id_text("erase-typed", T("erase.type_mismatch"))  # a near miss erases nothing
        coord.fill("erase-typed", "Maja")
        coord.click("erase-confirm")
        coord.wait_id_text("people-count", T("people.count", n=2), timeout=30)
        _sync(coord)
        _sync(worker)
        _person_count(worker, 2)
        assert not worker.page.get_by_text("Maja").count()
        team.field.engine.sync()
        assert all(p.alias != "Maja" for p in team.field.ws.persons())

        # ---- invite: a new device joins with the code shown, is let in, and gets the team's data
        coord.nav("nav.desk")
        coord.expect("desk-goal")  # the desk is drawn: a tap now is not lost
        coord.click("desk-tab-devices")
        coord.expect("devices-list")
        coord.click("devices-invite")
        code = coord.text("invite-code").split()[0]
        assert coord.has("invite-qr")
        coord.click("invite-close")
        newcomer = _device(tmp_path / "newcomer", "Ny", team.server.url, code)
        try:
            assert newcomer.engine.sync().pending
            coord.click("devices-refresh")
            coord.expect("devices-admitted")
            assert T("device_status.active") in coord.text(f"device-{newcomer.ws.device_id[:8]}")
            newcomer.engine.sync()
            assert sorted(p.alias for p in newcomer.ws.persons()) == sorted(
                p.alias for p in team.field.ws.persons())
        finally:
            newcomer.close()

        # ---- revoke: the worker's device is refused at its next sync and wipes itself
        coord.click(f"device-revoke-{team.worker_id[:8]}")
        coord.click("revoke-confirm")
        coord.wait_id_text(f"device-{team.worker_id[:8]}", T("device_status.revoked"), timeout=30)
        worker.page.bring_to_front()
        worker.click("sync-chip")
        worker.expect("setup-notice", timeout=45)
        assert T("errors.revoked") in worker.text("setup-notice")
        assert not (tmp_path / "worker" / "outreach.db").exists()
        team.field.engine.sync()  # the others go on, under the new key epoch
        assert team.field.ws.vault is not None and max(team.field.ws.vault.epochs) == 2
        coord.close()
        worker.close()
