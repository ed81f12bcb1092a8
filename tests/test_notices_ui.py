"""Security notices and fingerprints on the screens, without a browser: the notices as plain rows,
newest first, with ids and times and no detail; the settings screen lists them for every user
(`notices-list`) or says "None"; the coordinator's device rows carry each device's fingerprint, and
a device that waits for its fingerprint to be compared has a field for it, whose problems show there.
The screens are built on a stand-in page (the controls are plain objects until a page draws them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flet as ft
import pytest
from test_ui_services import PIN, run

from app.i18n import Translator
from app.services import AppConfig, Services
from app.services.problems import FingerprintMismatch
from app.state import NOTICE_KINDS, DeskDevice, DevicesView, NoticeRow
from app.ui.views.base import Ctx
from app.ui.views.devices import DevicesScreen
from app.ui.views.settings import SettingsScreen

RECORD, DEVICE = "a" * 32, "b" * 32
DETAIL = "an erasure without the coordinator's signature: ignored"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """A worker's device without a team: notices are for every user, not only the coordinator."""
    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True))
    run(s.create_workspace(PIN, "Ali"))
    yield s
    run(s.close())


def _ctx(services: Services, lang: str = "da", spawned: list[Any] | None = None) -> Ctx:
    """A session on a stand-in page; what a screen runs on the loop (`spawn`) lands in `spawned`."""
    def run_task(fn: Any, *args: Any) -> None:
        if spawned is not None:
            spawned.append(fn)

    page = SimpleNamespace(overlay=[], width=400, run_task=run_task, update=lambda: None)
    ctx = Ctx(page, services, services.config)  # type: ignore[arg-type]
    ctx.set_language(lang)
    return ctx


def _walk(control: Any) -> Iterator[Any]:
    yield control
    for name in ("content", "controls", "title", "subtitle", "leading", "trailing"):
        value = getattr(control, name, None)
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ft.BaseControl):
                yield from _walk(child)


def _find(root: Any, identifier: str) -> ft.Semantics:
    found = [c for c in _walk(root) if isinstance(c, ft.Semantics) and c.identifier == identifier]
    assert len(found) == 1, identifier
    return found[0]


def _words(control: Any) -> list[str]:
    return [c.value for c in _walk(control) if isinstance(c, ft.Text) and c.value]


def _settings(services: Services, lang: str = "da") -> ft.Control:
    async def scenario() -> ft.Control:
        screen = SettingsScreen(_ctx(services, lang), {})
        root = screen.build()
        await screen.load()
        return root

    return run(scenario())


def test_notices_come_newest_first_as_plain_rows(services: Services) -> None:
    assert run(services.notices()) == []
    services.ws.add_notice("purge_refused", RECORD, DEVICE, DETAIL)
    services.ws.add_notice("key_refused", None, None, "a team key not signed by the coordinator")
    rows = run(services.notices())
    assert [r.kind for r in rows] == ["key_refused", "purge_refused"]
    assert all(isinstance(r, NoticeRow) and isinstance(r.at, datetime) for r in rows)
    assert (rows[1].record_id, rows[1].device_id, rows[1].short_device) == (RECORD, DEVICE, DEVICE[:8])
    assert not hasattr(rows[1], "detail")  # the screens say the kind in words, not the technical sentence


def test_every_notice_kind_has_words_and_a_new_one_is_said_generally() -> None:
    for lang in ("da", "en"):
        t = Translator(lang)
        assert all(t.has(NoticeRow(datetime.now(), kind, None, None).kind_key) for kind in NOTICE_KINDS)
        other = NoticeRow(datetime.now(), "something_new", None, None)
        assert other.kind_key == "notice.other" and "something_new" in t(other.kind_key, kind=other.kind)


def test_settings_list_the_notices_for_a_worker(services: Services) -> None:
    services.ws.add_notice("purge_refused", RECORD, DEVICE, DETAIL)
    services.ws.add_notice("future_op", "c" * 32, DEVICE, "stamped in the future")
    root = _settings(services)
    words = _words(root)
    assert "Sikkerhedsmeddelelser" in words
    listed = _find(root, "notices-list")
    first, second = _find(listed, "notice-0"), _find(listed, "notice-1")
    t = Translator("da")
    assert t("notice.future_op") in _words(first)  # newest first, the kind in words
    details = " ".join(_words(second))
    assert t("notice.purge_refused") in _words(second)
    assert RECORD in details and f"enhed {DEVICE[:8]}" in details and DEVICE not in details
    assert DETAIL not in " ".join(words)  # the English technical sentence stays off the screen
    assert second.label and RECORD in second.label  # a screen reader hears the same


def test_settings_say_none_without_notices(services: Services) -> None:
    root = _settings(services, "en")
    assert "Security notices" in _words(root)
    assert _words(_find(_find(root, "notices-list"), "notices-none")) == ["None"]


def test_the_notices_are_read_again_after_a_sync_run(services: Services) -> None:
    async def scenario() -> list[str]:
        spawned: list[Any] = []
        screen = SettingsScreen(_ctx(services, "en", spawned), {})
        root = screen.build()
        await screen.load()
        services.ws.add_notice("key_refused", None, None, "a team key not signed by the coordinator")
        view = services.sync.view
        view.running = True
        screen.on_sync(view)
        view.running = False
        screen.on_sync(view)  # the run ended: it may have refused a key
        assert len(spawned) == 1
        await spawned[0]()
        return _words(_find(root, "notices-list"))

    words = run(scenario())
    assert Translator("en")("notice.key_refused") in words


def test_a_device_row_shows_its_fingerprint(services: Services) -> None:
    device = DeskDevice(device_id=DEVICE, name="ali", role="worker", status="active",
                        joined_at=datetime(2026, 2, 1, 9, 0), last_seen=None, key_epoch=1, this_device=False,
                        fingerprint="1A2B 3C4D 5E6F 7A8B 9C0D")
    screen = DevicesScreen(_ctx(services), {})
    row = screen._tile(device)
    tile = _find(row, f"device-{DEVICE[:8]}")
    assert isinstance(tile, ft.Semantics)
    assert "Fingeraftryk: 1A2B 3C4D 5E6F 7A8B 9C0D" in _words(tile)
    assert tile.label and "1A2B 3C4D 5E6F 7A8B 9C0D" in tile.label
    # a device still in hand is retired (it hands over first); a lost one is revoked at once
    assert _find(row, f"device-retire-{DEVICE[:8]}").content.content == "Pensionér"
    assert _find(row, f"device-revoke-{DEVICE[:8]}")
    retiring = screen._tile(DeskDevice(**{**device.__dict__, "retiring": True}))
    assert "Bedt om at aflevere og forlade teamet ved sin næste synkronisering" in _words(retiring)
    assert not [c for c in _walk(retiring) if getattr(c, "identifier", None) == f"device-retire-{DEVICE[:8]}"]



def _pending(awaiting: bool = True) -> DeskDevice:
    return DeskDevice(device_id=DEVICE, name="ali", role="worker", status="pending",
                      joined_at=datetime(2026, 2, 1, 9, 0), last_seen=None, key_epoch=None, this_device=False,
                      fingerprint="1A2B 3C4D 5E6F 7A8B 9C0D", awaiting_confirmation=awaiting)


def _press(root: Any, identifier: str) -> None:
    button = _find(root, identifier).content
    run(button.on_click(None))


def test_a_waiting_device_has_a_field_for_its_fingerprint_and_a_button(services: Services) -> None:
    screen = DevicesScreen(_ctx(services), {})
    plain = screen._tile(_pending(awaiting=False))
    assert not [c for c in _walk(plain) if isinstance(c, ft.TextField)]
    row = screen._tile(_pending())
    words = _words(row)
    assert "Venter på, at du sammenligner fingeraftrykket" in words
    field = _find(row, f"device-fingerprint-{DEVICE[:8]}").content
    assert isinstance(field, ft.TextField) and field.label == "Fingeraftryk på enhedens skærm"
    button = _find(row, f"device-let-in-{DEVICE[:8]}").content
    assert isinstance(button, ft.FilledButton) and button.content == "Luk ind"


def test_the_switch_shows_the_setting_once_the_list_came(services: Services) -> None:
    screen = DevicesScreen(_ctx(services, "en"), {})
    root = screen.build()
    switch = _find(root, "devices-confirm-switch").content
    assert isinstance(switch, ft.Switch) and switch.label == "Compare fingerprints before a device is let in"
    assert not screen.confirms_box.visible  # nothing to say before the server answered
    screen._show(DevicesView(devices=[_pending()], current_epoch=1, invites_pending=1, recovery_here=True,
                             recovery_made=None, admitted=0, confirms_devices=True))
    assert screen.confirms_box.visible and switch.value is True
    assert _find(root, f"device-fingerprint-{DEVICE[:8]}")


def test_problems_with_the_fingerprint_show_at_the_field(services: Services,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    screen = DevicesScreen(_ctx(services, "en"), {})
    row = screen._tile(_pending())
    field = _find(row, f"device-fingerprint-{DEVICE[:8]}").content
    t = Translator("en")
    _press(row, f"device-let-in-{DEVICE[:8]}")  # empty: refused before anything goes to the server
    assert field.error == t("errors.invalid_fingerprint")

    async def differ(device_id: str, fingerprint_seen: str) -> DevicesView:
        assert (device_id, fingerprint_seen) == (DEVICE, "0000 0000 0000 0000 0000")
        raise FingerprintMismatch("The fingerprints differ")

    monkeypatch.setattr(services.desk, "confirm_device", differ)
    field.value = "0000 0000 0000 0000 0000"
    _press(row, f"device-let-in-{DEVICE[:8]}")
    assert field.error == t("errors.fingerprint_mismatch")
    assert "not let in" in str(field.error)
