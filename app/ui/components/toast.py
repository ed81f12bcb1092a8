"""A short message at the bottom of the screen ("Saved", "Could not find the position"): what a
Material SnackBar shows, drawn by a control that lives in the page's overlay from the start.

Why not `ft.SnackBar`: in web mode the first SnackBar of a session took 160-200 ms from the tap
to the message (the browser building Material's snack bar machinery for the first time), where a
change of text in a control already on the page takes the redraw's 40-60 ms; that first one was
the slowest save of every benchmark round (`python -m bench.ui`). Here showing a message changes
the text and the visibility of controls that are already there. Pure control: no services, no
translations (callers pass the words in).
"""

from __future__ import annotations

import asyncio
from typing import Any

import flet as ft

__all__ = ["Toast", "TOAST_SECONDS"]

TOAST_SECONDS = 4.0
_MAX_WIDTH = 560
_ABOVE_NAV_BAR = 88  # on a phone: clear of the bottom navigation bar (80 px)


class Toast:
    """One per page session. `show(text)` replaces whatever message is up and hides it after
    `seconds`; a tap on it hides it at once. Its semantics node (`identifier="toast"`, a live
    region, so screen readers announce it) exists only while a message is up."""

    def __init__(self, page: ft.Page) -> None:
        self.page = page
        self._text = ft.Text("", size=15, color=ft.Colors.ON_INVERSE_SURFACE)
        self._bar = ft.Container(
            content=ft.Semantics(content=self._text, identifier="toast", live_region=True),
            bgcolor=ft.Colors.INVERSE_SURFACE,
            border_radius=8,
            padding=ft.Padding.symmetric(horizontal=16, vertical=14),
            shadow=ft.BoxShadow(blur_radius=6, spread_radius=0, color=ft.Colors.with_opacity(0.3, ft.Colors.BLACK)),
            on_click=self._dismiss,
        )
        self._row = ft.Row(controls=[self._bar], alignment=ft.MainAxisAlignment.CENTER)
        self._holder = ft.Container(content=self._row, left=12, right=12, bottom=_ABOVE_NAV_BAR, visible=False)
        self._shown = 0  # which message is up: a hide timer of an older one leaves a newer one alone
        page.overlay.append(self._holder)

    def show(self, text: str, *, error: bool = False, wide: bool = False, seconds: float = TOAST_SECONDS) -> None:
        self._shown += 1
        self._text.value = text
        self._text.color = ft.Colors.ON_ERROR if error else ft.Colors.ON_INVERSE_SURFACE
        self._bar.bgcolor = ft.Colors.ERROR if error else ft.Colors.INVERSE_SURFACE
        width = self.page.width or _MAX_WIDTH
        self._bar.width = min(_MAX_WIDTH, max(200, width - 24))
        self._holder.bottom = 24 if wide else _ABOVE_NAV_BAR
        self._holder.visible = True
        self._holder.update()
        shown = self._shown
        self.page.run_task(self._hide_after, shown, seconds)

    async def _hide_after(self, shown: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if shown == self._shown:
            self.hide()

    def hide(self) -> None:
        if self._holder.visible:
            self._holder.visible = False
            self._holder.update()

    def _dismiss(self, e: Any = None) -> None:
        self._shown += 1
        self.hide()
