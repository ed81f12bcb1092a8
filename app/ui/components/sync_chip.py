"""The sync chip: the truth about syncing at a glance (offline, N waiting, synced at 21:14, or an
error in plain words), and a sync on tap. It draws a `ChipModel` in words it is given; it does not
know how syncing works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flet as ft

from ...state import ChipModel

__all__ = ["SyncChip"]

_TONES: dict[str, tuple[Any, Any]] = {
    "ok": (ft.Colors.GREEN_100, ft.Colors.GREEN_900),
    "busy": (ft.Colors.BLUE_100, ft.Colors.BLUE_900),
    "waiting": (ft.Colors.AMBER_100, ft.Colors.BROWN_900),
    "offline": (ft.Colors.BLUE_GREY_100, ft.Colors.BLUE_GREY_900),
    "error": (ft.Colors.RED_100, ft.Colors.RED_900),
    "idle": (ft.Colors.GREY_200, ft.Colors.GREY_900),
}


class SyncChip:
    """`chip.control` goes into the page; `chip.show(model, words)` redraws it."""

    def __init__(self, on_tap: Callable[..., Any], *, identifier: str = "sync-chip", hint: str = "",
                 compact: bool = False) -> None:
        self.compact = compact  # a narrow top bar: the icon and a count; the words go to the label
        self._icon = ft.Icon(ft.Icons.CLOUD_QUEUE, size=20)
        self._text = ft.Text("", size=14, weight=ft.FontWeight.W_500, no_wrap=True, overflow=ft.TextOverflow.ELLIPSIS)
        self._box = ft.Container(
            ft.Row([self._icon, self._text], spacing=6, tight=True),
            padding=ft.Padding.symmetric(horizontal=8 if compact else 12, vertical=6), border_radius=24, height=48,
            width=None if not compact else 72,
            alignment=ft.Alignment.CENTER_LEFT, on_click=on_tap, ink=True,
        )
        self.control = ft.Semantics(content=self._box, identifier=identifier, button=True, hint_text=hint)

    def show(self, model: ChipModel, words: str) -> None:
        bg, fg = _TONES.get(model.tone, _TONES["idle"])
        self._box.bgcolor = bg
        self._text.color = fg
        self._icon.color = fg
        self._icon.icon = getattr(ft.Icons, model.icon, ft.Icons.CLOUD_QUEUE)
        if self.compact:
            n = model.params.get("n")
            self._text.value = str(n) if n else ""
            self.control.label = words
            self.control.tooltip = words
        else:
            self._text.value = words
            self.control.label = None
