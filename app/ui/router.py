"""The route table and the one object that decides what a session shows: it matches a route to a
screen, sends a device without data to the first-run screen and a locked one to the lock screen,
frames main screens in the shell, and re-draws when the width crosses 600 px or the language
changes. It also keeps the session's guards: auto-lock after idle minutes and when the app goes to
the background, and a wiped device back to first run. It imports the screens; they know it only
as the `Navigator` of `navigation`, so no screen imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flet as ft

from ..services import Problem
from ..state import SyncView, chip_model, is_wide
from .views.base import Ctx, Screen
from .views.desk import OverviewScreen
from .views.devices import DevicesScreen
from .views.lock import LockScreen
from .views.new_contact import NewContactScreen
from .views.people import PeopleScreen, PersonEditScreen, PersonScreen
from .views.places import PlacesScreen
from .views.privacy import PrivacyScreen
from .views.reports import ReportsScreen
from .views.review import ReviewScreen
from .views.settings import SettingsScreen
from .views.setup import JoinScreen, SetupScreen
from .views.shell import Shell
from .views.today import TodayScreen

__all__ = ["Router", "ROUTES", "RouteSpec", "match", "flutter_locale"]

log = logging.getLogger("outreach.app")

# Flutter's own words (a text field's counter read aloud, "4.000 tegn tilbage"; the date picker)
# follow the app's language, not the browser's or the phone's
_FLUTTER_LOCALES = {"da": ft.Locale("da", "DK"), "en": ft.Locale("en", "GB")}


def flutter_locale(lang: str) -> ft.LocaleConfiguration:
    return ft.LocaleConfiguration(supported_locales=list(_FLUTTER_LOCALES.values()),
                                  current_locale=_FLUTTER_LOCALES.get(lang, _FLUTTER_LOCALES["da"]))

ScreenFactory = Callable[[Ctx, dict[str, str]], Screen]


@dataclass(frozen=True)
class RouteSpec:
    pattern: str  # "/people/{id}"
    factory: ScreenFactory
    needs_unlock: bool = True
    needs_workspace: bool = True
    coordinator_only: bool = False

    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[0-9a-f]{6,32})", self.pattern) + "/?$")


def _person(ctx: Ctx, params: dict[str, str]) -> Screen:
    # wide: the list with the person beside it; narrow: the person alone
    return PeopleScreen(ctx, params) if ctx.wide else PersonScreen(ctx, params)


def _place(ctx: Ctx, params: dict[str, str]) -> Screen:
    return PlacesScreen(ctx, params)


ROUTES: list[RouteSpec] = [
    RouteSpec("/setup", SetupScreen, needs_unlock=False, needs_workspace=False),
    RouteSpec("/lock", LockScreen, needs_unlock=False),
    RouteSpec("/join", JoinScreen),
    RouteSpec("/today", TodayScreen),
    RouteSpec("/contact/new", NewContactScreen),
    RouteSpec("/people", PeopleScreen),
    RouteSpec("/people/new", PersonEditScreen),
    RouteSpec("/people/{id}", _person),
    RouteSpec("/people/{id}/edit", PersonEditScreen),
    RouteSpec("/places", PlacesScreen),
    RouteSpec("/places/{id}", _place),
    RouteSpec("/settings", SettingsScreen),
    RouteSpec("/desk", OverviewScreen, coordinator_only=True),
    RouteSpec("/desk/devices", DevicesScreen, coordinator_only=True),
    RouteSpec("/desk/review", ReviewScreen, coordinator_only=True),
    RouteSpec("/desk/privacy", PrivacyScreen, coordinator_only=True),
    RouteSpec("/desk/reports", ReportsScreen, coordinator_only=True),
]


def match(route: str) -> tuple[RouteSpec, dict[str, str]] | None:
    parts = urlsplit(route or "/")
    path = parts.path or "/"
    for spec in ROUTES:
        m = spec.regex().match(path)
        if m:
            params = dict(parse_qsl(parts.query))
            params.update({k: v for k, v in m.groupdict().items() if v is not None})
            return spec, params
    return None



def _is_main(path: str) -> bool:
    """A main screen of the bottom bar or the desk's tabs: one a back arrow may return to."""
    return path in ("/today", "/people", "/places", "/settings") or path == "/desk" or path.startswith("/desk/")

class Router:
    """One per UI session. `start()` shows the first screen and starts the guards. The screens
    see it as a `navigation.Navigator` (through `Ctx.router`), never as this class."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.page = ctx.page
        ctx.router = self
        self.screen: Screen | None = None
        self.shell: Shell | None = None
        self.route = ""  # what is shown
        self.url = ctx.page.route or "/"  # what the browser's address bar says
        self._asked = 0  # routes the address bar asked for so far (a newer one makes an older one moot)
        self.after_unlock = "/today"
        self._last_activity = time.monotonic()
        self._guard: asyncio.Task[None] | None = None
        self._rendering = asyncio.Lock()
        self._locale_lang: str | None = None  # the language Flutter was last told

    def follow_language(self) -> None:
        """Tell Flutter the app's language when it changed (sent with the next page update). The
        session's start does it before the first screen is drawn, so that no screen is rebuilt
        for it under the worker's fingers; a language switch then redraws the screen anyway."""
        lang = self.ctx.t.lang
        if lang != self._locale_lang:
            self._locale_lang = lang
            self.page.locale_configuration = flutter_locale(lang)

    # -------------------------------------------------------------- wiring
    async def start(self) -> None:
        page, services = self.page, self.ctx.services
        page.on_route_change = self._on_route_change
        page.on_resize = self._on_resize
        page.on_app_lifecycle_state_change = self._on_lifecycle
        page.on_keyboard_event = lambda e: self.touch()
        services.on_activity.append(self.touch)
        services.sync.listeners.append(self._on_sync)
        services.sync.data_listeners.append(self._on_data)
        services.sync.revoked_listeners.append(self._on_revoked)
        self._guard = asyncio.get_running_loop().create_task(self._idle_guard())
        await self.show(page.route or "/")

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    async def stop(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
        if self.screen is not None:
            self.screen.dispose()

    # -------------------------------------------------------------- routing
    async def _on_route_change(self, e: ft.RouteChangeEvent) -> None:
        self.touch()
        self.url = e.route
        self._asked += 1
        await self.show(e.route)

    async def show(self, route: str) -> None:
        asked = self._asked
        async with self._rendering:
            if self._asked != asked:
                return  # a tap asked for another screen while this one waited: that one is shown next
            target = await self._resolve(route)
            await self._render(target)
            if target != self.url and self._asked == asked:
                # keep the address bar true to what is shown; otherwise going back to the address
                # it still shows would look like no change to Flet and be dropped. Not awaited: a
                # client that went away would never answer. Not when the address bar asked for
                # another screen meanwhile (a desk tab tapped while the overview loaded): sending it
                # back here took the worker back to the screen they had left.
                self.url = target
                self.page.navigate(target)

    def _came_from(self, screen: Screen, route: str, previous: str) -> None:
        """Back returns where the worker came from: a screen with a back arrow entered from another
        main screen (Today -> a contact's person) goes back there, not to its own list; entered
        again from one of its own children (the person's new contact, its edit form), it keeps
        the origin it had."""
        if screen.back is None:
            return
        key = "back:" + urlsplit(route).path
        origin = urlsplit(previous).path if previous else ""
        if _is_main(origin) and origin != screen.back:
            self.ctx.memory[key] = origin
        elif _is_main(origin):
            self.ctx.memory.pop(key, None)
        remembered = self.ctx.memory.get(key)
        if isinstance(remembered, str):
            screen.back = remembered

    async def _resolve(self, route: str) -> str:
        services = self.ctx.services
        found = match(route)
        has_ws = await services.has_workspace()
        if not has_ws:
            return "/setup"
        if found is None or found[0].pattern == "/setup":
            return "/today" if services.unlocked else "/lock"
        spec, _params = found
        if spec.needs_unlock and not services.unlocked:
            self.after_unlock = route
            return "/lock"
        if spec.pattern == "/lock" and services.unlocked:
            return "/today"
        if spec.coordinator_only and not await services.is_coordinator():
            return "/today"  # the desk is the coordinator's; a worker's device has no such screen
        return route

    async def _render(self, route: str, *, force: bool = False) -> None:
        if route == self.route and self.screen is not None and not force:
            return
        found = match(route)
        if found is None:
            return
        spec, params = found
        if self.screen is not None:
            self.screen.dispose()
        self.ctx.wide = is_wide(self.page.width)
        self.follow_language()  # a switch (Settings, first run) or an unlock in another language
        if self.ctx.services.unlocked:
            self.ctx.coordinator = await self.ctx.services.is_coordinator()
        screen = spec.factory(self.ctx, params)
        self._came_from(screen, route, self.route)
        self.screen, self.route = screen, route
        if screen.shell:
            self.shell = Shell(self.ctx, screen, route, on_sync_tap=self._sync_tap, on_lock=self._lock_tap)
            view = self.shell.build()
            self.shell.show_sync(self.ctx.services.sync.view)
        else:
            self.shell = None
            view = ft.View(route=route, controls=[screen.build()], padding=0,
                           horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.page.views.clear()
        self.page.views.append(view)
        self.page.title = f"Outreach · {screen.title()}"
        self.page.update()
        try:
            await screen.load()
        except Exception:
            log.exception("loading %s failed", route)
            self.ctx.toast(self.ctx.t("errors.unexpected"), error=True)
        if not screen.disposed:
            self.page.update()

    async def rerender(self) -> None:
        """Draw the current route again (language or layout changed)."""
        async with self._rendering:
            await self._render(self.route, force=True)

    # -------------------------------------------------------------- events
    async def _on_resize(self, e: Any) -> None:
        wide = is_wide(getattr(e, "width", None) or self.page.width)
        if wide != self.ctx.wide:
            self.ctx.wide = wide
            await self.rerender()

    def _on_sync(self, view: SyncView) -> None:
        if self.shell is not None:
            self.shell.show_sync(view)
        if self.screen is not None:
            self.screen.on_sync(view)
        if self.shell is not None and self.screen is not None and type(self.screen).on_sync is Screen.on_sync:
            self.shell.update_sync()  # only the chip and the progress bar changed: redraw them alone
        else:
            self.page.update()

    def _on_data(self) -> None:
        screen = self.screen
        if screen is not None and not screen.disposed:
            self.page.run_task(self._refresh_screen, screen)

    async def _refresh_screen(self, screen: Screen) -> None:
        if screen is self.screen and not screen.disposed:
            await screen.on_data_changed()
            screen.update()

    async def _sync_tap(self, e: Any = None) -> None:
        self.touch()
        services = self.ctx.services
        if not services.sync.view.joined:
            self.ctx.navigate("/settings")
            return
        await services.sync.run_now()
        if self.shell is not None and self.shell.chip.compact:  # only an icon and a number: say it in words
            model = chip_model(services.sync.view)
            self.ctx.toast(self.ctx.t(model.key, **model.params), error=model.tone == "error")

    async def _lock_tap(self, e: Any = None) -> None:
        await self.lock()

    def _on_revoked(self, problem: Problem) -> None:
        self.ctx.notice = problem
        self.page.run_task(self._after_wipe)

    async def _after_wipe(self) -> None:
        self.route = ""
        await self.show("/setup")

    # -------------------------------------------------------------- locking
    async def lock(self) -> None:
        services = self.ctx.services
        if not services.unlocked:
            return
        if self.route and self.route != "/lock":
            self.after_unlock = self.route
        await services.lock()
        await self.show("/lock")

    async def lock_quietly(self) -> None:
        """The browser went away: lock, and leave only the lock screen in the session for a
        reconnecting tab, without asking the (absent) client anything."""
        services = self.ctx.services
        if services.unlocked:
            if self.route and self.route != "/lock":
                self.after_unlock = self.route
            await services.lock()
        async with self._rendering:
            await self._render("/lock", force=True)
            self.url = ""  # the address bar is not known any more: set it on the next screen

    async def _on_lifecycle(self, e: ft.AppLifecycleStateChangeEvent) -> None:
        if not self.ctx.config.lock_on_background:
            return
        if e.state in (ft.AppLifecycleState.HIDE, ft.AppLifecycleState.PAUSE):
            await self.lock()

    async def _idle_guard(self) -> None:
        while True:
            await asyncio.sleep(5)
            services = self.ctx.services
            minutes = services.prefs.autolock_minutes
            if services.unlocked and minutes and time.monotonic() - self._last_activity > minutes * 60:
                log.info("auto-lock after %d idle minutes", minutes)
                await self.lock()
