"""Today: the big "new contact" action, the follow-ups that are due, and today's contacts. The sync
chip sits in the top bar of the shell.
"""

from __future__ import annotations

from typing import Any

import flet as ft

from ...state import FollowUpRow, TodayData
from ..components.rows import contact_tile, follow_up_tile
from ..components.ui import banner, big_button, empty_state, page_body, section_title, text_button, tid
from .base import Ctx, Screen

__all__ = ["TodayScreen"]


class TodayScreen(Screen):
    title_key = "today.title"
    nav = "today"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        self.notice = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.follow_ups = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.contacts = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.date = ft.Text("", size=15, color=ft.Colors.ON_SURFACE_VARIANT)

    def build(self) -> ft.Control:
        t = self.t
        return page_body([
            self.date,
            big_button(t("today.new_contact"), lambda e: self.ctx.navigate("/contact/new"), "new-contact",
                       icon=ft.Icons.ADD_COMMENT),
            self.notice,
            tid(self.follow_ups, "today-followups"),
            tid(self.contacts, "today-contacts"),
        ], wide=self.ctx.wide)

    async def load(self) -> None:
        data, problem = await self.ctx.attempt(self.services.today())
        if problem or data is None:
            return
        self._fill(data)

    def _fill(self, data: TodayData) -> None:
        t = self.t
        self.date.value = t("today.date", weekday=t(f"weekday.{data.day.weekday()}"), date=t.date(data.day))
        notices: list[ft.Control] = []
        if not data.joined:
            notices.append(banner(t("today.no_team"), identifier="today-no-team", actions=[
                text_button(t("today.join_now"), lambda e: self.ctx.navigate("/join"), "today-join")]))
        elif data.device_status == "pending":
            notices.append(banner(t("today.pending"), tone="warn", identifier="today-pending",
                                  icon=ft.Icons.HOURGLASS_TOP))
        self.notice.controls = notices

        fu_rows: list[ft.Control] = [section_title(t("today.follow_ups"), count=len(data.follow_ups))]
        if data.follow_ups:
            fu_rows += [follow_up_tile(f, t, self._done_handler(f), self._open_person(f.person_id))
                        for f in data.follow_ups]
        else:
            fu_rows.append(empty_state(t("today.no_follow_ups")))
        self.follow_ups.controls = fu_rows

        c_rows: list[ft.Control] = [section_title(t("today.contacts"), count=len(data.contacts))]
        if data.contacts:
            c_rows += [contact_tile(c, t, self._open_person(c.person_id)) for c in data.contacts]
        else:
            c_rows.append(empty_state(t("today.no_contacts"), "today-empty"))
        self.contacts.controls = c_rows

    def _open_person(self, person_id: str | None) -> Any:
        if not person_id:
            return None
        return lambda e: self.ctx.navigate(f"/people/{person_id}")

    def _done_handler(self, row: FollowUpRow) -> Any:
        async def done(e: Any) -> None:
            _ok, problem = await self.ctx.attempt(self.services.follow_up_done(row.id, bool(e.control.value)))
            if problem:
                self.ctx.toast(self.ctx.words(problem), error=True)
                return
            self.ctx.toast(self.t("followup.done_toast"))
            await self.load()
            self.update()

        return done
