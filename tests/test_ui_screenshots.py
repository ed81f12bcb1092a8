"""Screenshots of the main screens at phone (412x915) and laptop (1280x800) size, written to
`docs/screenshots/` (the README shows them). The data is the clearly fake demo data."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, create_team
from uihelpers import (  # noqa: F401
    BLANK_PNG_BYTES,
    LAPTOP,
    PHONE,
    PIN,
    SCREENSHOTS,
    UI,
    AppProcess,
    T,
    browser,
    seed_workspace,
)

from models.usecases.exports import DanishExcel

pytestmark = pytest.mark.browser

SIZES = {"phone": PHONE, "laptop": LAPTOP}


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    root = tmp_path_factory.mktemp("demo")
    seed_workspace(root / "device", demo=(60, 600), today=4)
    with AppProcess(root / "device") as app:
        yield app


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshots_of_the_main_screens(demo_app: AppProcess, browser: Any, size: str) -> None:  # noqa: F811
    ui = UI(browser, demo_app.url, size=SIZES[size])
    ui.expect("lock-pin")
    shots = [ui.shot(f"lock-{size}")]
    ui.fill("lock-pin", PIN)
    ui.click("lock-unlock")
    ui.expect("new-contact")
    ui.wait_text(T("today.contacts") + " (4)")
    shots.append(ui.shot(f"today-{size}"))

    ui.click("new-contact")
    ui.expect("nc-person-search")
    ui.type("nc-person-search", "demo lange")
    ui.wait_text(T("contact.new_person_named", alias="demo lange"))
    shots.append(ui.shot(f"new-contact-{size}"))

    ui.nav("nav.people")
    ui.expect("people-list")
    ui.wait_text(T("people.count", n=60))
    shots.append(ui.shot(f"people-{size}"))
    ui.page.locator('[flt-semantics-identifier^="person-"]').first.click()
    ui.expect("person-timeline")
    shots.append(ui.shot(f"person-{size}"))

    ui.nav("nav.places")
    ui.expect("places-list")
    ui.page.locator('[flt-semantics-identifier^="place-"]').first.click()
    ui.expect("place-name")
    shots.append(ui.shot(f"places-{size}"))

    ui.nav("nav.settings")
    ui.expect("settings-fingerprint")
    shots.append(ui.shot(f"settings-{size}"))
    ui.close()
    for path in shots:
        assert path.stat().st_size > BLANK_PNG_BYTES, path


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshot_of_the_first_run(tmp_path: Path, browser: Any, size: str) -> None:  # noqa: F811
    with AppProcess(tmp_path / "device", server_url="https://outreach.example.dk") as app:
        ui = UI(browser, app.url, size=SIZES[size])
        ui.expect("setup-pin")
        path = ui.shot(f"first-run-{size}")
        ui.close()
    assert path.parent == SCREENSHOTS and path.stat().st_size > BLANK_PNG_BYTES


@pytest.fixture(scope="module")
def desk_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, Path]]:
    """A coordinator with the demo data in a team, one conflict waiting for review."""
    from models.usecases.demo import populate
    from models.usecases.reports import set_goal
    from models.workspace import Workspace
    from sync.engine import SyncEngine

    root = tmp_path_factory.mktemp("desk")
    (root / "server").mkdir()
    with ServerProcess(workdir=root / "server") as server:
        coord = Workspace(root / "coordinator", fast_kdf=True)
        coord.init(PIN, worker_name="Kim")
        coord_engine = SyncEngine(coord)
        coord_engine.join(server.url, create_team(server.db_url, "Vesterbro"), device_name="Kim")
        populate(coord, persons=60, contacts=600)
        set_goal(coord, target=40, baseline=60)  # a goal the demo team has not reached yet
        field = Workspace(root / "field", fast_kdf=True)
        field.init("field passphrase", worker_name="Ali")
        field_engine = SyncEngine(field)
        field_engine.join(server.url, coord_engine.invite(), device_name="Ali")
        coord_engine.sync()
        field_engine.sync()
        person = coord.persons()[0].id
        coord.edit_person(person, {"status": "housed", "status_date": "2026-11-20"})
        field.edit_person(person, {"status": "moved_away"})
        field_engine.sync()
        coord_engine.sync()
        for engine, ws in ((field_engine, field), (coord_engine, coord)):
            engine.close()
            ws.close()
        with AppProcess(root / "coordinator", server_url=server.url) as app:
            yield app, root


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshots_of_the_desk_and_its_forms(desk_app: tuple[AppProcess, Path], browser: Any,  # noqa: F811
                                               size: str) -> None:
    app, root = desk_app
    ui = UI(browser, app.url, size=SIZES[size])
    ui.fill("lock-pin", PIN)
    ui.click("lock-unlock")
    ui.expect("new-contact")
    ui.nav("nav.desk")
    ui.expect("desk-goal")
    assert "60" in ui.text("desk-persons-known")
    shots = [ui.shot(f"desk-overview-{size}")]

    # the goal: bad input is refused at the field, a good one changes the words
    ui.scroll_to("desk-target")
    ui.fill("desk-target", "abc")
    ui.click("desk-goal-save")
    ui.wait_id_text("desk-target", T("desk.goal_bad"))
    ui.fill("desk-target", "45")
    ui.click("desk-goal-save")
    ui.wait_id_text("desk-goal", "45", timeout=20)
    ui.scroll_to("desk-chart-goal")
    shots.append(ui.shot(f"desk-charts-{size}"))

    ui.scroll_to("desk-tab-devices", step=-400)
    ui.click("desk-tab-devices")
    ui.expect("devices-list")
    ui.wait_text("Ali")
    shots.append(ui.shot(f"desk-devices-{size}"))

    ui.nav("nav.desk")
    ui.expect("desk-goal")  # the desk is drawn: a tap now is not lost
    ui.click("desk-tab-review")
    ui.expect("review-conflict-0")
    assert "Ali" in ui.text("review-conflict-0")  # the devices' names, not their ids
    shots.append(ui.shot(f"desk-review-{size}"))

    ui.nav("nav.desk")
    ui.expect("desk-goal")  # the desk is drawn: a tap now is not lost
    ui.click("desk-tab-privacy")
    ui.expect("audit-list")
    shots.append(ui.shot(f"desk-privacy-{size}"))

    # an export asks first, says where the file goes, and writes what Danish Excel reads
    ui.nav("nav.desk")
    ui.expect("desk-goal")  # the desk is drawn: a tap now is not lost
    ui.click("desk-tab-reports")
    out = root / f"exports-{size}"
    ui.fill("files-folder", "relative/folder")
    ui.click("export-contacts")
    ui.wait_id_text("files-folder", T("errors.invalid_folder"))
    ui.fill("files-folder", str(out))
    ui.click("export-contacts")
    said = ui.text("export-confirm-text")
    assert "600" in said and str(out) in said
    shots.append(ui.shot(f"desk-export-{size}"))
    ui.click("export-confirm")
    ui.wait_id_text("toast", T("files.written", rows=600, path=str(out)))
    written = list(out.glob("outreach-contacts-*.csv"))
    assert len(written) == 1
    rows = list(csv.reader(io.StringIO(written[0].read_bytes().decode("utf-8-sig")), dialect=DanishExcel))
    assert len(rows) == 601
    ui.close()
    for path in shots:
        assert path.stat().st_size > BLANK_PNG_BYTES, path
