"""The first-run screen without a browser (issue 16, items 10 and 11): an address that came with
the app is folded under "Avanceret" and a problem with it opens the fold again; without one the
address is asked first; while a join or a device is being made, both buttons are off and the
spinner is inside the one that was tapped. Built on a stand-in page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flet as ft
import pytest
from test_ui_services import run

from app.services import AppConfig, Services
from app.ui.views.base import Ctx
from app.ui.views.setup import SetupScreen

SERVER = "http://127.0.0.1:8700"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True, server_url=SERVER))
    yield s
    run(s.close())


def _screen(services: Services, config: AppConfig | None = None) -> SetupScreen:
    page = SimpleNamespace(overlay=[], width=412, run_task=lambda *a: None, update=lambda: None)
    ctx = Ctx(page, services, config or services.config)  # type: ignore[arg-type]
    screen = SetupScreen(ctx, {})
    screen.update = lambda: None  # type: ignore[method-assign]
    return screen


def _ids(control: Any) -> list[str]:
    found = [control.identifier] if isinstance(control, ft.Semantics) and control.identifier else []
    for name in ("content", "controls"):
        value = getattr(control, name, None)
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ft.BaseControl):
                found += _ids(child)
    return found


def test_a_known_address_is_folded_and_a_problem_with_it_opens_the_fold(services: Services) -> None:
    screen = _screen(services)
    screen.build()
    shown = _ids(screen.form)
    assert "setup-advanced" in shown and shown.index("setup-code") < shown.index("setup-advanced")
    assert not screen.advanced.expanded and screen.server.value == SERVER
    assert screen.server_said.value == f"Server: {SERVER}"
    screen._show_errors({"server": "errors.offline"})
    assert screen.advanced.expanded


def test_without_an_address_it_is_asked_first(services: Services) -> None:
    screen = _screen(services, replace(services.config, server_url=None))
    screen.build()
    shown = _ids(screen.form)
    assert "setup-advanced" not in shown and shown.index("setup-server") < shown.index("setup-code")


def test_the_spinner_is_inside_the_tapped_button(services: Services) -> None:
    screen = _screen(services)
    screen.build()
    join, solo = screen.join_button.content, screen.solo_button.content
    screen._set_busy(True, screen.join_button)
    assert join.disabled and solo.disabled
    assert "setup-busy" in _ids(join) and "setup-busy" not in _ids(solo)
    screen._set_busy(False)
    assert not join.disabled and join.content == "Bliv en del af teamet" and join.icon == ft.Icons.GROUP_ADD
