"""What every screen shares: the session context (`Ctx`: page, services, translator, layout,
navigation, messages) and the `Screen` base class the router builds, shows, loads and disposes.

A screen builds its controls in `build()`, fills them in `load()` (data comes from `Services`,
off the UI loop), and redraws itself on `on_data_changed()` when a sync brought news. Screens
never call the database or the network themselves and never hold a `Workspace`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import flet as ft

from models.errors import StoreError
from sync.errors import SyncError

from ...i18n import Translator
from ...services import AppConfig, Problem, Services, explain
from ...state import SyncView, is_wide
from ..components.toast import Toast
from ..components.ui import confirm_dialog
from ..navigation import Navigator

__all__ = ["Ctx", "Screen"]

log = logging.getLogger("outreach.app")
T = TypeVar("T")



class Ctx:
    """One UI session: what a screen may use."""

    def __init__(self, page: ft.Page, services: Services, config: AppConfig) -> None:
        self.page = page
        self.services = services
        self.config = config
        self.t = Translator(services.prefs.language)
        self.wide = is_wide(page.width)
        self.router: Navigator | None = None  # set by the router (`ui.router.Router`) it is shown by
        self._clipboard: ft.Clipboard | None = None
        self._toast = Toast(page)  # in the page's overlay from the first screen on
        self.notice: Problem | None = None  # a message to show on the next screen (e.g. wiped)
        self.memory: dict[str, Any] = {}  # what a screen keeps across a redraw (filters, typed text)
        self.coordinator = False  # this device is the team's coordinator: the desk is shown

    # -------------------------------------------------------------- navigation
    def navigate(self, route: str) -> None:
        """Go to `route`; from a half-filled form, only after asking (nothing typed is thrown
        away without a word)."""
        screen = self.router.screen if self.router is not None else None
        if screen is not None and not screen.disposed and screen.unsaved():
            def leave(e: Any = None) -> None:
                self.page.pop_dialog()
                screen.discard()
                self.page.navigate(route)

            self.confirm(self.t("draft.discard_title"), ft.Text(self.t("draft.discard_text"), size=15, width=420),
                         confirm=self.t("draft.discard"), on_confirm=leave, identifier="discard",
                         icon=ft.Icons.DELETE_OUTLINE)
            return
        self.page.navigate(route)

    def set_language(self, lang: str) -> None:
        self.t = Translator(lang)

    # -------------------------------------------------------------- messages
    def toast(self, text: str, *, error: bool = False) -> None:
        self._toast.show(text, error=error, wide=self.wide)

    def confirm(self, title: str, content: ft.Control, *, confirm: str, on_confirm: Callable[..., Any],
                identifier: str, icon: Any = None) -> None:
        """Ask before doing it: Cancel closes the question, `confirm` runs `on_confirm`."""
        self.page.show_dialog(confirm_dialog(title, content, confirm=confirm, on_confirm=on_confirm,
                                             cancel=self.t("common.cancel"), on_cancel=lambda e: self.page.pop_dialog(),
                                             identifier=identifier, icon=icon))

    def words(self, problem: Problem) -> str:
        return self.t(problem.key, **problem.params)

    async def attempt(self, work: Awaitable[T]) -> tuple[T | None, Problem | None]:
        """Await a service call; errors of either tree come back as a Problem, never raised."""
        try:
            return await work, None
        except (StoreError, SyncError) as exc:
            log.info("action failed: %s", type(exc).__name__)
            return None, explain(exc)

    # -------------------------------------------------------------- services
    @property
    def clipboard(self) -> ft.Clipboard:
        if self._clipboard is None:
            self._clipboard = ft.Clipboard()
        return self._clipboard

    def touch(self) -> None:
        for hook in self.services.on_activity:
            hook()


class Screen:
    """A screen of the app. Subclasses set `title_key`, `nav` (which destination is selected) and
    `back` (the route of the back arrow, when there is one)."""

    title_key = "app.name"
    nav: str | None = None
    back: str | None = None
    shell = True  # False: a full-screen page without navigation (first run, lock)

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        self.ctx = ctx
        self.t = ctx.t
        self.params = params
        self.disposed = False

    @property
    def services(self) -> Services:
        return self.ctx.services

    def title(self) -> str:
        return self.t(self.title_key)

    def build(self) -> ft.Control:
        raise NotImplementedError

    def fab(self) -> ft.Control | None:
        return None

    async def load(self) -> None:
        """Fetch what the screen shows (off the loop) and fill the controls."""

    def unsaved(self) -> bool:
        """Something typed here would be lost by leaving (a form's screen says so)."""
        return False

    def discard(self) -> None:
        """The worker chose to leave it: what was typed may go."""

    async def on_data_changed(self) -> None:
        await self.load()

    def on_sync(self, view: SyncView) -> None:
        """The sync status changed (the chip is drawn by the shell)."""

    def dispose(self) -> None:
        self.disposed = True

    # helpers ------------------------------------------------------------
    def update(self) -> None:
        if not self.disposed:
            self.ctx.page.update()

    def spawn(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run a coroutine of this screen on the loop (e.g. a search after a keystroke)."""
        self.ctx.page.run_task(fn)

    def later(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(seconds, lambda: self.ctx.page.run_task(fn))
