"""The frame around the main screens: a top bar (title, back arrow, sync chip, lock), the progress
bar of a long sync, and the navigation: a bottom bar under 600 px, a rail beside the content from
600 px. The frame lives as long as one route is shown; the router rebuilds it on every route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flet as ft

from ...state import SyncView, chip_model
from ..components.sync_chip import SyncChip
from ..components.ui import icon_button
from .base import Ctx, Screen

__all__ = ["Shell", "DESTINATIONS", "DESK", "destinations"]

# (name, route, icon, selected icon, i18n key)
DESTINATIONS: list[tuple[str, str, Any, Any, str]] = [
    ("today", "/today", ft.Icons.TODAY_OUTLINED, ft.Icons.TODAY, "nav.today"),
    ("people", "/people", ft.Icons.PEOPLE_OUTLINE, ft.Icons.PEOPLE, "nav.people"),
    ("places", "/places", ft.Icons.PLACE_OUTLINED, ft.Icons.PLACE, "nav.places"),
    ("settings", "/settings", ft.Icons.SETTINGS_OUTLINED, ft.Icons.SETTINGS, "nav.settings"),
]
# the coordinator's desk, before Settings, on the coordinator's devices only
DESK = ("desk", "/desk", ft.Icons.INSIGHTS_OUTLINED, ft.Icons.INSIGHTS, "nav.desk")


def destinations(coordinator: bool) -> list[tuple[str, str, Any, Any, str]]:
    return [*DESTINATIONS[:-1], DESK, DESTINATIONS[-1]] if coordinator else list(DESTINATIONS)


class Shell:
    def __init__(self, ctx: Ctx, screen: Screen, route: str, *, on_sync_tap: Callable[..., Any],
                 on_lock: Callable[..., Any]) -> None:
        self.ctx = ctx
        self.screen = screen
        self.route = route
        t = ctx.t
        # a phone's top bar has room for the chip's words only on Today, where they matter most
        self.chip_in_title = not ctx.wide and screen.nav == "today" and not screen.back
        self.chip = SyncChip(on_sync_tap, hint=t("sync.tap_hint"), compact=not ctx.wide and not self.chip_in_title)
        self.progress = ft.ProgressBar(value=None, visible=False, semantics_label=t("sync.progress"), bar_height=4)
        self.progress_text = ft.Text("", size=12, visible=False)
        self._on_lock = on_lock
        self.destinations = destinations(ctx.coordinator)

    def _nav_index(self) -> int | None:
        for i, (name, *_rest) in enumerate(self.destinations):
            if name == self.screen.nav:
                return i
        return None

    def _go(self, e: ft.Event[Any]) -> None:
        index = int(e.control.selected_index or 0)
        self.ctx.navigate(self.destinations[index][1])

    def build(self) -> ft.View:
        ctx, t, screen = self.ctx, self.ctx.t, self.screen
        wide = ctx.wide
        leading = None
        if screen.back and not (wide and screen.nav in ("people", "places") and screen.back in ("/people", "/places")):
            leading = icon_button(ft.Icons.ARROW_BACK, t("common.back"), lambda e: ctx.navigate(screen.back or "/today"),
                                  "back")
        title: ft.Control = ft.Semantics(content=ft.Text(screen.title(), weight=ft.FontWeight.BOLD), header=True,
                                         identifier="screen-title")
        actions: list[ft.Control] = []
        if self.chip_in_title:
            title = ft.Row([self.chip.control], spacing=0)
        else:
            actions.append(ft.Container(self.chip.control, padding=ft.Padding.only(right=4)))
        actions.append(icon_button(ft.Icons.LOCK_OUTLINE, t("settings.lock_now"), self._on_lock, "lock-now"))
        appbar = ft.AppBar(leading=leading, automatically_imply_leading=False, title=title, actions=actions,
                           bgcolor=ft.Colors.SURFACE_CONTAINER)
        body = screen.build()
        content = ft.Column([self.progress, self.progress_text, ft.Container(body, expand=True)], spacing=0, expand=True,
                            horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        index = self._nav_index()
        if wide:
            rail = ft.NavigationRail(
                selected_index=index, label_type=ft.NavigationRailLabelType.ALL, min_width=88,
                destinations=[ft.NavigationRailDestination(icon=icon, selected_icon=sel, label=t(key))
                              for _n, _r, icon, sel, key in self.destinations],
                on_change=self._go, bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
            )
            controls: list[ft.BaseControl] = [ft.Row([rail, ft.VerticalDivider(width=1), content], expand=True, spacing=0)]
            nav_bar = None
        else:
            controls = [content]
            nav_bar = ft.NavigationBar(
                selected_index=index if index is not None else 0,
                destinations=[ft.NavigationBarDestination(icon=icon, selected_icon=sel, label=t(key))
                              for _n, _r, icon, sel, key in self.destinations],
                on_change=self._go,
            )
        return ft.View(route=self.route, controls=controls, appbar=appbar, navigation_bar=nav_bar,
                       floating_action_button=screen.fab(),  # type: ignore[arg-type]  # any control works
                       padding=0, spacing=0,
                       horizontal_alignment=ft.CrossAxisAlignment.STRETCH)

    def update_sync(self) -> None:
        """Send what `show_sync` changed (a redraw of the chip and the progress bar, not the page)."""
        for control in (self.chip.control, self.progress, self.progress_text):
            if control.parent is not None:  # on the page (a frame being replaced may not be)
                control.update()

    def show_sync(self, view: SyncView) -> None:
        t = self.ctx.t
        model = chip_model(view)
        self.chip.show(model, t(model.key, **model.params))
        long_run = view.running and (view.first_sync or view.progress_count >= 200)
        self.progress.visible = long_run
        self.progress.value = view.progress
        self.progress_text.visible = long_run
        if not long_run:
            self.progress_text.value = ""
        elif view.progress_phase == "fold":
            self.progress_text.value = t("sync.progress_fold", n=view.progress_count, total=view.progress_total)
        else:
            self.progress_text.value = t("sync.progress_count", n=view.progress_count)
