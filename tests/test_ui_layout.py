"""At phone size (412x915) nothing covers or cuts off what a worker taps or waits on (issue 16,
item 10): the new-contact form's "Gem" covers no chip, at the top of the form or at its end; the
join button's spinner is inside the screen; and a worker's first screen asks for the code alone
when the server's address came with the app, keeping the address one tap away under "Avanceret"
(item 11). In a real Chromium on the real web build."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uihelpers import PHONE, PIN, UI, AppProcess, T, browser, seed_workspace  # noqa: F401

pytestmark = pytest.mark.browser

CHIPS = ("service-", "kind-", "referral-", "living-", "nc-fu-")


Box = tuple[float, float, float, float]  # x, y, width, height


def _boxes(ui: UI, prefixes: tuple[str, ...]) -> dict[str, Box]:
    """Where each control whose identifier starts with one of `prefixes` is on the screen now."""
    found = ui.page.evaluate("""prefixes => [...document.querySelectorAll('[flt-semantics-identifier]')]
        .map(n => [n.getAttribute('flt-semantics-identifier'), n.getBoundingClientRect()])
        .filter(([id, r]) => prefixes.some(p => id.startsWith(p)) && r.width > 0 && r.height > 0)
        .map(([id, r]) => [id, r.x, r.y, r.width, r.height])""", list(prefixes))
    return {i: (x, y, w, h) for i, x, y, w, h in found}


def _within(a: Box, b: Box) -> Box | None:
    """The part of `a` inside `b`, if any."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _covered(ui: UI) -> list[str]:
    """The chips a user sees (the part inside the form's scrolling area: Flutter keeps nodes of
    the controls just outside it too) that "Gem" lies over."""
    save, form = _boxes(ui, ("nc-save",))["nc-save"], _boxes(ui, ("nc-form",))["nc-form"]
    seen = {i: _within(box, form) for i, box in _boxes(ui, CHIPS).items()}
    return sorted(i for i, part in seen.items() if part is not None and _within(part, save) is not None)


def test_save_covers_no_chip_of_the_new_contact_form(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    seed_workspace(tmp_path / "device")
    with AppProcess(tmp_path / "device") as app:
        ui = UI(browser, app.url, size=PHONE)
        ui.fill("lock-pin", PIN)
        ui.click("lock-unlock")
        ui.click("new-contact")
        ui.expect("service-referral")
        assert _boxes(ui, ("service-",)), "the services are on the form's first screen"
        assert _covered(ui) == []  # "Hjælp til ydelser" sat under a floating "Gem"
        # the form's end, as far as it scrolls: its last chips too
        ui.scroll_to("referral-other")
        ui.page.mouse.wheel(0, 3000)
        ui.page.wait_for_function("""() => {
            const box = id => document.querySelector(`[flt-semantics-identifier="${id}"]`)?.getBoundingClientRect();
            const when = box('nc-when'), form = box('nc-form');
            return when && form && when.bottom <= form.bottom;
        }""")
        assert _covered(ui) == []
        ui.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that takes the connection and never answers: a join waits (and shows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_workers_first_screen_asks_for_the_code_and_shows_its_wait(tmp_path: Path, browser: Any,  # noqa: F811
                                                                     silent_server: str) -> None:
    with AppProcess(tmp_path / "device", server_url=silent_server) as app:
        ui = UI(browser, app.url, size=PHONE)
        ui.expect("setup-code")
        # the address came with the app: folded away, said in the fold's line, one tap from the field
        assert not ui.has("setup-server")
        assert T("setup.advanced_server", url=silent_server) in ui.text("setup-advanced")
        ui.click("setup-advanced")
        assert ui.value("setup-server") == silent_server

        ui.fill("setup-code", "ABCDEFGH-JKMNPQ-RSTVWX-YZ2345-6789AB-CD")
        ui.fill("setup-pin", PIN)
        ui.fill("setup-pin-again", PIN)
        ui.click("setup-join")
        spinner = ui.expect("setup-busy").bounding_box()  # the server never answers: the join waits
        assert spinner is not None and spinner["width"] > 0
        assert spinner["x"] >= 0 and spinner["x"] + spinner["width"] <= PHONE[0] - 16  # inside the page's margin
        ui.close()
