"""The desk's two actions on a device that cannot be undone, without a browser: retiring (a device
in hand) and revoking (a lost one) each ask first, and only "confirm" does it; then the list is
read again and a toast says what happened, or the problem in words. One handler does both
(`DevicesScreen._ask_then`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flet as ft
import pytest
from test_ui_services import PIN, run

from app.services import AppConfig, Services
from app.state import DeskDevice
from app.ui.views.base import Ctx
from app.ui.views.devices import DevicesScreen
from models.errors import InvalidInput

DEVICE, OTHER = "b" * 32, "c" * 32


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True))
    run(s.create_workspace(PIN, "Kim"))
    yield s
    run(s.close())


class Desk:
    """The desk's service as the screen calls it: what was asked, and what it answers."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[tuple[str, str]] = []
        self.fail = fail

    async def retire(self, device_id: str) -> None:
        self.asked.append(("retire", device_id))
        if self.fail:
            raise InvalidInput("device", "a device cannot retire itself")

    async def revoke(self, device_id: str) -> Any:
        self.asked.append(("revoke", device_id))
        return SimpleNamespace(epoch=3, keyed=[OTHER])

    async def checkpoint(self) -> Any:
        self.asked.append(("checkpoint", ""))
        if self.fail:
            raise InvalidInput("device", "not now")
        return SimpleNamespace(size=2_500_000) if len(self.asked) == 1 else None


def _screen(services: Services, desk: Desk) -> tuple[DevicesScreen, list[Any], list[tuple[str, bool]]]:
    dialogs: list[Any] = []
    page = SimpleNamespace(overlay=[], width=400, run_task=lambda *a: None, update=lambda: None,
                           show_dialog=dialogs.append, pop_dialog=lambda: dialogs.pop())
    ctx = Ctx(page, services, services.config)  # type: ignore[arg-type]
    ctx.set_language("en")
    toasts: list[tuple[str, bool]] = []
    ctx.toast = lambda text, error=False: toasts.append((text, error))  # type: ignore[method-assign]
    services.desk = desk  # type: ignore[assignment]
    screen = DevicesScreen(ctx, {})
    screen.listed = SimpleNamespace(devices=[SimpleNamespace(device_id=OTHER, name="bo")])  # type: ignore[assignment]
    loads: list[bool] = []

    async def load() -> None:
        loads.append(True)

    screen.load = load  # type: ignore[method-assign]
    screen.update = lambda: None  # type: ignore[method-assign]
    screen.loads = loads  # type: ignore[attr-defined]
    return screen, dialogs, toasts


def _device() -> DeskDevice:
    return DeskDevice(device_id=DEVICE, name="ali", role="worker", status="active",
                      joined_at=datetime(2026, 2, 1, 9, 0), last_seen=None, key_epoch=1, this_device=False,
                      fingerprint=None)


def _confirm(dialog: ft.AlertDialog) -> None:
    (button,) = [a for a in dialog.actions if getattr(a, "identifier", "").endswith("-confirm")]
    run(button.content.on_click(None))


@pytest.mark.parametrize(("action", "title", "toast"), [
    ("retire", "Retire ali?", "ali hands everything over and leaves the team at its next sync."),
    ("revoke", "Revoke ali?", "ali is revoked. The new key (epoch 3) went to: bo."),
])
def test_a_device_action_asks_first_then_does_it_and_says_so(services: Services, action: str, title: str,
                                                             toast: str) -> None:
    desk = Desk()
    screen, dialogs, toasts = _screen(services, desk)
    ask = getattr(screen, f"_{action}")(_device())
    ask(None)
    (dialog,) = dialogs
    assert dialog.title.value == title and desk.asked == []  # asked, nothing done yet
    _confirm(dialog)
    assert dialogs == [] and desk.asked == [(action, DEVICE)]
    assert toasts == [(toast, False)] and screen.loads == [True]  # type: ignore[attr-defined]


def test_a_device_action_that_fails_says_why_and_keeps_the_list(services: Services) -> None:
    screen, dialogs, toasts = _screen(services, Desk(fail=True))
    screen._retire(_device())(None)
    _confirm(dialogs[0])
    assert len(toasts) == 1 and toasts[0][1] is True
    assert screen.loads == []  # type: ignore[attr-defined]


def test_the_checkpoint_button_says_what_came_of_it(services: Services) -> None:
    desk = Desk()
    screen, _dialogs, toasts = _screen(services, desk)
    run(screen._checkpoint())
    run(screen._checkpoint())  # nothing new since
    assert desk.asked == [("checkpoint", ""), ("checkpoint", "")]
    assert toasts == [("Checkpoint written (2.5 MB): new devices start from it.", False),
                      ("Nothing to write: nothing is new since the last checkpoint, or changes are still waiting "
                       "to be sent.", False)]
    screen, _dialogs, toasts = _screen(services, Desk(fail=True))
    run(screen._checkpoint())
    assert len(toasts) == 1 and toasts[0][1] is True
    assert any(getattr(c, "identifier", "") == "devices-checkpoint" for c in _walk(screen.build()))


def _walk(control: Any) -> Iterator[Any]:
    yield control
    for name in ("content", "controls"):
        child = getattr(control, name, None)
        for c in child if isinstance(child, list) else [child] if child is not None else []:
            yield from _walk(c)
