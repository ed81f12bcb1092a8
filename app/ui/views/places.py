"""Places: the team's named spots, most recently used first, each with who was last met there;
a new place in two fields; a place's recent contacts beside the list (wide) or on their own
(phone).
"""

from __future__ import annotations

from typing import Any

import flet as ft

from ...state import PlaceDetail, PlaceDraft, PlaceRow
from ..components.rows import contact_tile, place_tile
from ..components.ui import (
    ErrorLine,
    empty_state,
    muted,
    page_body,
    primary_button,
    section_title,
    text_field,
    tid,
)
from .base import Ctx, Screen

__all__ = ["PlacesScreen"]


class PlacesScreen(Screen):
    title_key = "places.title"
    nav = "places"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        self.selected = params.get("id")
        self.only_detail = bool(self.selected) and not ctx.wide
        if self.only_detail:
            self.back = "/places"
        self.list = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.detail = ft.Column(spacing=8, scroll=ft.ScrollMode.AUTO, expand=True,
                                horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.name_box, self.name = text_field(t("places.name"), "places-name", expand=True)
        self.zone_box, self.zone = text_field(t("places.zone"), "places-zone", expand=True)
        self.message = ErrorLine("places-message")

    def build(self) -> ft.Control:
        t = self.t
        if self.only_detail:
            return ft.Container(self.detail, padding=16, expand=True)
        add = ft.Column([
            section_title(t("places.new")),
            ft.ResponsiveRow([ft.Container(self.name_box, col={"xs": 12, "sm": 7}),
                              ft.Container(self.zone_box, col={"xs": 12, "sm": 5})], spacing=8, run_spacing=8),
            self.message.control,
            primary_button(t("places.add"), self._add, "places-add", icon=ft.Icons.ADD_LOCATION_ALT),
        ], spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        controls = [tid(self.list, "places-list", container=True), add, ft.Container(height=24)]
        if not self.ctx.wide:
            return page_body(controls, wide=False)
        left = ft.Container(ft.Column(controls, spacing=8, scroll=ft.ScrollMode.AUTO, expand=True,
                                      horizontal_alignment=ft.CrossAxisAlignment.STRETCH), width=420, padding=16)
        if not self.selected:
            self.detail.controls = [empty_state(t("places.choose"), "places-choose")]
        return ft.Row([left, ft.VerticalDivider(width=1), ft.Container(self.detail, padding=16, expand=True)],
                      expand=True, spacing=0, vertical_alignment=ft.CrossAxisAlignment.STRETCH)

    async def load(self) -> None:
        if not self.only_detail:
            rows, problem = await self.ctx.attempt(self.services.places())
            if rows is not None:
                self._fill_list(rows)
        if self.selected:
            detail, problem = await self.ctx.attempt(self.services.place_detail(self.selected))
            if problem or detail is None:
                self.detail.controls = [empty_state(self.t("places.not_found"))]
            else:
                self._fill_detail(detail)

    def _fill_list(self, rows: list[PlaceRow]) -> None:
        t = self.t
        self.list.controls = [
            place_tile(r, t, self._open(r.id), selected=r.id == self.selected) for r in rows
        ] or [empty_state(t("places.none"), "places-empty")]

    def _open(self, place_id: str) -> Any:
        return lambda e: self.ctx.navigate(f"/places/{place_id}")

    def _fill_detail(self, d: PlaceDetail) -> None:
        t = self.t
        p = d.place
        controls: list[ft.Control] = [
            tid(ft.Text(p.name, size=24, weight=ft.FontWeight.BOLD), "place-name"),
        ]
        if p.zone:
            controls.append(muted(p.zone))
        controls.append(section_title(t("places.recent_contacts"), count=len(d.contacts)))
        controls += [contact_tile(c, t, self._person(c.person_id), show_date=True, show_place=False)
                     for c in d.contacts] or [
            empty_state(t("places.no_contacts"))]
        self.detail.controls = controls

    def _person(self, person_id: str | None) -> Any:
        return (lambda e: self.ctx.navigate(f"/people/{person_id}")) if person_id else None

    async def _add(self, e: Any = None) -> None:
        t = self.t
        draft = PlaceDraft(self.name.value or "", self.zone.value or "")
        errors = draft.check()
        self.name.error = t(errors["name"]) if "name" in errors else None
        self.zone.error = t(errors["zone"]) if "zone" in errors else None
        if errors:
            self.update()
            return
        new_id, problem = await self.ctx.attempt(self.services.add_place(draft))
        if problem:
            self.message.show(self.ctx.words(problem))
            self.update()
            return
        self.name.value = ""
        self.zone.value = ""
        self.message.show("")
        self.ctx.toast(t("places.added"))
        rows, _p = await self.ctx.attempt(self.services.places())
        if rows is not None:
            self._fill_list(rows)
        self.update()
