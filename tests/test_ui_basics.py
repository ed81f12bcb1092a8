"""The app in a browser, one device without a team: first run to a logged contact, lock and unlock
with the wrong-PIN countdown, the language switch, and forms that refuse bad input at the field
and save nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uihelpers import LAPTOP, PHONE, PIN, UI, AppProcess, T, browser, seed_workspace  # noqa: F401

from app.ui.components.toast import TOAST_SECONDS

pytestmark = pytest.mark.browser


@pytest.fixture
def seeded_app(tmp_path: Path) -> Iterator[AppProcess]:
    """An app whose device has its PIN already (a wrong PIN costs 3 s from the third try)."""
    seed_workspace(tmp_path / "device", delay_base=3.0)
    with AppProcess(tmp_path / "device") as app:
        yield app


def _unlock(ui: UI, pin: str = PIN, *, lands_on: str = "new-contact") -> None:
    ui.fill("lock-pin", pin)
    ui.click("lock-unlock")
    ui.expect(lands_on)


def test_first_run_without_a_team_to_a_logged_contact(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    with AppProcess(tmp_path / "device") as app:
        ui = UI(browser, app.url, size=PHONE)
        ui.fill("setup-pin", "12")
        ui.fill("setup-pin-again", "12")
        ui.click("setup-solo")
        ui.wait_text(T("errors.pin_short", n=6))  # shown at the PIN field; nothing is created
        assert not (tmp_path / "device" / "outreach.db").exists()
        ui.fill("setup-pin", PIN)
        ui.fill("setup-pin-again", PIN)
        ui.click("setup-solo")
        ui.expect("new-contact")
        assert T("sync.not_joined") in ui.text("sync-chip")

        # three taps and the note: new contact, the person, save
        ui.click("new-contact")
        ui.type("nc-person-search", "Store Søren")
        ui.wait_id_text("nc-new-person", "Store Søren")
        ui.click("nc-new-person")
        ui.fill("nc-note", "Første møde")
        ui.click("nc-save")
        ui.wait_id_text("toast", T("contact.saved"))  # said at once, and gone again by itself
        ui.expect("new-contact")
        ui.gone("toast", timeout=TOAST_SECONDS + 5)
        ui.wait_text("Store Søren")
        ui.wait_text("Første møde")

        # the same person again is found as one types, and their place is remembered
        ui.click("new-contact")
        ui.type("nc-person-search", "sore")
        ui.page.get_by_text("Store Søren").first.click()
        ui.expect("nc-person-chosen")
        ui.click("nc-save")
        ui.expect("new-contact")
        ui.wait_text(T("today.contacts") + " (2)")

        # joining a team later asks for the server and the code, not for a new PIN
        ui.click("today-join")
        ui.expect("setup-code")
        assert not ui.has("setup-pin")
        ui.fill("setup-server", "http://10.1.2.3:8700")
        ui.fill("setup-code", "not a code")
        ui.click("setup-join")
        ui.wait_id_text("setup-server", T("errors.insecure_url"))
        ui.wait_id_text("setup-code", T("errors.code_format"))
        ui.click("setup-cancel")
        ui.expect("settings-join")
        ui.close()


def test_lock_unlock_and_the_wrong_pin_countdown(seeded_app: AppProcess, browser: Any) -> None:  # noqa: F811
    ui = UI(browser, seeded_app.url, size=PHONE)
    ui.expect("lock-pin")
    for left in (9, 8):
        ui.fill("lock-pin", "000000")
        ui.click("lock-unlock")
        ui.wait_id_text("lock-message", T("errors.wrong_pin", left=left))
    ui.fill("lock-pin", "000000")
    ui.click("lock-unlock")
    ui.wait_id_text("lock-message", T("errors.wrong_pin", left=7))
    seen = ui.wait_id_text("lock-countdown", T("lock.wait", seconds=3).split("3")[0].strip())
    assert any(str(n) in seen for n in (1, 2, 3))
    # during the countdown the unlock button is off
    button = ui.node("lock-unlock").locator("[role=button]").first
    assert button.get_attribute("aria-disabled") == "true"
    ui.gone("lock-countdown", timeout=10)
    _unlock(ui)

    # lock now, from the top bar; the app asks for the PIN again and goes back where it was
    ui.nav("nav.places")
    ui.expect("places-list")
    ui.click("lock-now")
    ui.expect("lock-pin")
    assert not ui.has("places-list")
    _unlock(ui, lands_on="places-list")
    ui.close()


def test_every_browser_session_unlocks_on_its_own(seeded_app: AppProcess, browser: Any) -> None:  # noqa: F811
    first = UI(browser, seeded_app.url, size=PHONE)
    _unlock(first)
    second = UI(browser, seeded_app.url, size=PHONE)
    second.expect("lock-pin")
    assert not second.has("new-contact")
    first.close()
    second.close()


def test_language_switch_changes_the_words(seeded_app: AppProcess, browser: Any) -> None:  # noqa: F811
    ui = UI(browser, seeded_app.url, size=LAPTOP)
    _unlock(ui)
    ui.nav("nav.settings")
    ui.expect("language")
    ui.wait_text(T("settings.lock_now"))
    ui.page.get_by_text(T("language.en"), exact=True).first.click()
    ui.wait_text(T("settings.lock_now", "en"))
    ui.nav("nav.today", "en")
    ui.wait_text(T("today.new_contact", "en"))
    assert T("today.new_contact") not in ui.all_text()
    # Flutter's own words follow: the note's counter is read out in English now (issue 16, item 11)
    ui.click("new-contact")
    ui.expect("nc-note")
    ui.page.wait_for_function("() => document.body.innerHTML.includes('characters remaining')", timeout=20_000)
    assert "tegn tilbage" not in ui.page.content()
    ui.nav("nav.today", "en")
    ui.expect("new-contact")
    # the choice is kept: after locking, the app still speaks English
    ui.click("lock-now")
    ui.expect("lock-pin")
    ui.wait_text(T("lock.unlock", "en"))
    _unlock(ui)  # back where it was locked: Today
    ui.nav("nav.settings", "en")
    ui.page.get_by_text(T("language.da"), exact=True).first.click()
    ui.wait_text(T("settings.lock_now"))
    ui.nav("nav.today")
    ui.click("new-contact")
    ui.expect("nc-note")
    ui.page.wait_for_function("() => document.body.innerHTML.includes('tegn tilbage')", timeout=20_000)
    ui.close()


def test_bad_input_is_shown_at_the_field_and_nothing_is_saved(seeded_app: AppProcess, browser: Any) -> None:  # noqa: F811
    ui = UI(browser, seeded_app.url, size=LAPTOP)
    _unlock(ui)
    ui.expect("today-empty")

    # a contact without a person, with an impossible follow-up date
    ui.click("new-contact")
    ui.expect("nc-person-search")
    ui.fill("nc-follow-up", "31-02-2030")
    ui.click("nc-save")
    ui.wait_id_text("nc-person-error", T("errors.choose_person"))
    ui.wait_id_text("nc-follow-up", T("errors.date_format"))
    ui.wait_id_text("nc-save-error", T("errors.form_has_problems"))
    ui.click("nc-anonymous")
    ui.click("nc-save")
    ui.wait_id_text("nc-follow-up", T("errors.date_format"))
    ui.nav("nav.today")
    ui.click("discard-confirm")  # the half-filled form asks before it is thrown away
    ui.expect("today-empty")  # nothing was saved

    # a person without an alias and with a birth year that is not one
    ui.nav("nav.people")
    ui.expect("people-empty")
    ui.click("people-new")
    ui.expect("pf-alias")
    ui.fill("pf-birth-year", "nineteen")
    ui.fill("pf-cpr", "123")
    ui.click("pf-save")
    ui.wait_id_text("pf-alias", T("errors.required"))
    ui.wait_id_text("pf-birth-year", T("errors.year_range"))
    ui.wait_id_text("pf-cpr", T("errors.cpr"))
    ui.nav("nav.people")
    ui.click("discard-confirm")
    ui.expect("people-empty")  # nothing was saved
    time.sleep(0.2)
    ui.close()
