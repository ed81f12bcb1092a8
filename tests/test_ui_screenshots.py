"""Screenshots of the main screens at phone (412x915) and laptop (1280x800) size, written to
`docs/screenshots/` (the README shows them). The data is the clearly fake demo data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uihelpers import LAPTOP, PHONE, PIN, SCREENSHOTS, UI, AppProcess, T, browser, seed_workspace  # noqa: F401

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
        assert path.stat().st_size > 10_000, path


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshot_of_the_first_run(tmp_path: Path, browser: Any, size: str) -> None:  # noqa: F811
    with AppProcess(tmp_path / "device", server_url="https://outreach.example.dk") as app:
        ui = UI(browser, app.url, size=SIZES[size])
        ui.expect("setup-pin")
        path = ui.shot(f"first-run-{size}")
        ui.close()
    assert path.parent == SCREENSHOTS and path.stat().st_size > 10_000
