"""The lock screen: unlock with the PIN or passphrase. After wrong tries the wait before the next
try is shown as a countdown (the wait is kept on disk, so it survives a restart); after too many
the device's data is erased and the app starts over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import flet as ft

from ..components.ui import ErrorLine, muted, page_body, primary_button, text_field
from .base import Ctx, Screen

__all__ = ["LockScreen"]


class LockScreen(Screen):
    title_key = "lock.title"
    shell = False

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        # on_change: every keystroke reaches this side as an event, ahead of the tap on "Lås op" (a
        # tap right after typing could otherwise be handled before the typed value arrived)
        self.pin_box, self.pin = text_field(t("lock.pin"), "lock-pin", password=True, autofocus=True,
                                            on_submit=self._unlock, on_change=self._typed,
                                            prefix_icon=ft.Icons.PIN_OUTLINED)
        self.message = ErrorLine("lock-message", size=16)
        self.countdown = ErrorLine("lock-countdown", size=18, bold=True)
        self.button = primary_button(t("lock.unlock"), self._unlock, "lock-unlock", icon=ft.Icons.LOCK_OPEN,
                                     expand=True)
        # Words, not a spinning ring: in web mode the browser draws a spinner's every frame on the
        # CPU, and during an unlock it took a core from the unlock itself (bench.ui: 2.0 -> 1.6 s
        # for the first unlock of a session, 1.5 -> 1.0 s for the next)
        self.busy = ft.Semantics(content=ft.Text(t("lock.unlocking"), size=15, color=ft.Colors.ON_SURFACE_VARIANT),
                                 identifier="lock-busy", live_region=True, visible=False)
        self._ticker: asyncio.Task[None] | None = None

    def build(self) -> ft.Control:
        t = self.t
        notice = self.ctx.notice
        top: list[ft.Control] = []
        if notice is not None:
            top.append(ft.Text(self.ctx.words(notice), color=ft.Colors.ERROR, size=16))
            self.ctx.notice = None
        body = [
            ft.Container(height=40),
            ft.Icon(ft.Icons.LOCK, size=64, color=ft.Colors.PRIMARY),
            ft.Semantics(content=ft.Text(t("lock.title"), size=26, weight=ft.FontWeight.BOLD,
                                         text_align=ft.TextAlign.CENTER), header=True),
            muted(t("lock.intro"), size=15),
            *top,
            self.pin_box,
            self.message.control,
            self.countdown.control,
            ft.Row([self.button]),
            self.busy,
        ]
        return ft.SafeArea(page_body(body, wide=self.ctx.wide, max_width=440), expand=True)

    async def load(self) -> None:
        wait = await self.services.throttle_wait()
        if wait > 0:
            self._start_countdown(wait)

    def _enable(self, on: bool) -> None:
        # only the button: a disabled field would lose the keyboard between two tries
        self.button.content.disabled = not on  # type: ignore[union-attr]

    def _start_countdown(self, seconds: float) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self._ticker = asyncio.get_running_loop().create_task(self._tick(seconds))

    async def _tick(self, seconds: float) -> None:
        remaining = int(seconds + 0.999)
        self._enable(False)
        while remaining > 0 and not self.disposed:
            self.countdown.show(self.t("lock.wait", seconds=remaining))
            self.update()
            await asyncio.sleep(1)
            remaining -= 1
        if self.disposed:
            return
        self.countdown.show("")
        self._enable(True)
        self.update()

    def _typed(self, e: Any = None) -> None:
        self.ctx.touch()

    async def _unlock(self, e: Any = None) -> None:
        pin = self.pin.value or ""
        if not pin or (self.button.content.disabled):  # type: ignore[union-attr]
            return
        self.busy.visible = True
        self._enable(False)
        self.update()
        _ok, problem = await self.ctx.attempt(self.services.unlock(pin))
        self.busy.visible = False
        if problem is None:
            await self._unlocked()
            if self.services.needs_stronger_passphrase:
                self._ask_stronger(pin)
            return
        self.pin.value = ""
        self._enable(True)
        if problem.key == "errors.wiped":
            self.ctx.notice = problem
            self.ctx.navigate("/setup")
            return
        self.message.show(self.ctx.words(problem))
        if problem.retry_after > 0:
            self._start_countdown(problem.retry_after)
        self.update()

    async def _unlocked(self) -> None:
        services = self.services
        prefs = await services.preferences()
        if prefs.language != self.t.lang:
            self.ctx.set_language(prefs.language)
        services.sync.start()
        await services.sync.refresh()
        services.sync.request()
        router = self.ctx.router
        target = router.after_unlock if router else "/today"
        self.ctx.navigate(target if target not in ("/lock", "/setup", "") else "/today")

    def _ask_stronger(self, old: str) -> None:
        """A laptop or browser without a keystore, opened with a short PIN: a copy of the data
        file could be guessed offline. Ask for a stronger passphrase (one is suggested); "Later"
        keeps the PIN for now, and the question comes again at the next unlock."""
        t, ctx = self.t, self.ctx
        suggestion = self.services.suggest_passphrase()
        box, field = text_field(t("passphrase.new"), "passphrase-new", value=suggestion, hint=t("passphrase.hint"))
        error = ErrorLine("passphrase-error")

        async def change(e: Any = None) -> None:
            new = (field.value or "").strip()
            found = self.services.check_pin(new, new)
            if found:
                error.show(t(found["pin"], n=6))
                ctx.page.update()
                return
            _ok, problem = await ctx.attempt(self.services.change_passphrase(old, new))
            if problem is not None:
                error.show(ctx.words(problem))
                ctx.page.update()
                return
            ctx.page.pop_dialog()
            ctx.toast(t("passphrase.changed"))

        content = ft.Column([muted(t("passphrase.why")), box, error.control], tight=True, spacing=12, width=440)
        ctx.confirm(t("passphrase.title"), content, confirm=t("passphrase.change"), on_confirm=change,
                    identifier="passphrase", icon=ft.Icons.KEY)

    def dispose(self) -> None:
        super().dispose()
        if self._ticker is not None:
            self._ticker.cancel()
