"""Settings: language, auto-lock, the worker's name, the team and its server (join, sync now,
invite a device for the coordinator), this device's facts (id, fingerprint, what waits to be
sent), its security notices (what it refused or set aside, for every user, workers too), and lock
now.
"""

from __future__ import annotations

from typing import Any

import flet as ft

from ...state import AUTOLOCK_CHOICES, DeviceInfo, NoticeRow, SyncView, chip_model
from ..components.rows import notice_tile
from ..components.ui import (
    banner,
    dropdown,
    empty_state,
    labelled,
    muted,
    page_body,
    primary_button,
    secondary_button,
    section_title,
    text_field,
    tid,
)
from .base import Ctx, Screen
from .devices import invite_now
from .setup import language_switch

__all__ = ["SettingsScreen"]


class SettingsScreen(Screen):
    title_key = "settings.title"
    nav = "settings"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        prefs = ctx.services.prefs
        self.autolock_box, self.autolock = dropdown(
            t("settings.autolock"), "settings-autolock",
            [(str(n), t("settings.minutes", n=n)) for n in AUTOLOCK_CHOICES],
            value=str(prefs.autolock_minutes), on_select=self._autolock, expand=True)
        self.name_box, self.name = text_field(t("settings.worker_name"), "settings-name", expand=True)
        self.server_box, self.server = text_field(t("settings.server"), "settings-server", expand=True,
                                                  keyboard=ft.KeyboardType.URL)
        self.team = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.device = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.notices = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.sync_status = ft.Text("", size=15)
        self._sync_running = False

    def build(self) -> ft.Control:
        t = self.t
        return page_body([
            section_title(t("settings.language")),
            language_switch(self.ctx, self._language),
            section_title(t("settings.security")),
            self.autolock_box,
            muted(t("settings.autolock_hint"), size=13),
            primary_button(t("settings.lock_now"), self._lock, "settings-lock", icon=ft.Icons.LOCK),
            section_title(t("settings.you")),
            ft.Row([self.name_box, secondary_button(t("common.save"), self._save_name, "settings-name-save")],
                   vertical_alignment=ft.CrossAxisAlignment.START),
            section_title(t("settings.team")),
            self.team,
            section_title(t("settings.device")),
            self.device,
            section_title(t("settings.notices")),
            muted(t("settings.notices_hint"), size=13),
            tid(self.notices, "notices-list", container=True),
            ft.Container(height=24),
        ], wide=self.ctx.wide)

    async def load(self) -> None:
        info, problem = await self.ctx.attempt(self.services.device_info())
        if problem or info is None:
            return
        self.name.value = info.worker_name
        self._fill_team(info)
        self._fill_device(info)
        await self._load_notices()
        self.on_sync(self.services.sync.view)

    def on_sync(self, view: SyncView) -> None:
        model = chip_model(view)
        self.sync_status.value = self.t(model.key, **model.params)
        if self._sync_running and not view.running:  # a run may have refused something: say so here
            self.spawn(self._notices_after_sync)
        self._sync_running = view.running

    async def _load_notices(self) -> None:
        rows, problem = await self.ctx.attempt(self.services.notices())
        if problem is None and rows is not None:  # unreadable (locked meanwhile): the list stays as it was
            self._fill_notices(rows)

    async def _notices_after_sync(self) -> None:
        if not self.disposed:
            await self._load_notices()
            self.update()

    def _fill_team(self, info: DeviceInfo) -> None:
        t = self.t
        if not info.joined:
            self.team.controls = [
                muted(t("settings.no_team")),
                primary_button(t("settings.join"), lambda e: self.ctx.navigate("/join"), "settings-join",
                               icon=ft.Icons.GROUP_ADD),
            ]
            return
        self.server.value = info.server_url or ""
        controls: list[ft.Control] = [
            labelled(t("settings.team_name"), info.team_name or "", "settings-team-name"),
            labelled(t("settings.role"), t(f"role.{info.role}") if info.role else "", "settings-role"),
        ]
        if info.device_status == "pending":
            controls.append(banner(t("today.pending"), tone="warn", identifier="settings-pending",
                                   icon=ft.Icons.HOURGLASS_TOP))
        controls += [
            ft.Row([self.server_box, secondary_button(t("common.save"), self._save_server, "settings-server-save")],
                   vertical_alignment=ft.CrossAxisAlignment.START),
            ft.Row([tid(self.sync_status, "settings-sync-status")]),
            primary_button(t("settings.sync_now"), self._sync_now, "settings-sync", icon=ft.Icons.SYNC),
        ]
        if info.role == "coordinator":
            controls += [
                muted(t("settings.invite_hint"), size=13),
                secondary_button(t("settings.invite"), self._invite, "settings-invite", icon=ft.Icons.PERSON_ADD_ALT),
            ]
        self.team.controls = controls

    def _fill_device(self, info: DeviceInfo) -> None:
        t = self.t
        last = t.datetime(info.last_sync) if info.last_sync else t("time.never")
        self.device.controls = [
            labelled(t("settings.fingerprint"), info.fingerprint, "settings-fingerprint"),
            labelled(t("settings.device_id"), info.device_id, "settings-device-id"),
            labelled(t("settings.pending"), t("settings.pending_n", n=info.pending_ops), "settings-pending-ops"),
            labelled(t("settings.last_sync"), last),
            labelled(t("settings.data_dir"), info.data_dir),
            labelled(t("settings.version"), info.app_version),
        ]

    def _fill_notices(self, rows: list[NoticeRow]) -> None:
        t = self.t
        self.notices.controls = [notice_tile(row, t, i) for i, row in enumerate(rows)] \
            or [empty_state(t("settings.notices_none"), "notices-none")]

    # ------------------------------------------------------------------ actions
    async def _language(self, e: ft.Event[Any]) -> None:
        lang = list(e.control.selected or [self.t.lang])[0]
        await self.services.set_preferences(language=lang)
        self.ctx.set_language(lang)
        if self.ctx.router:
            await self.ctx.router.rerender()

    async def _autolock(self, e: Any) -> None:
        minutes = int(e.control.value or 5)
        await self.services.set_preferences(autolock_minutes=minutes)
        self.ctx.toast(self.t("settings.autolock_saved", n=minutes))

    async def _lock(self, e: Any = None) -> None:
        if self.ctx.router:
            await self.ctx.router.lock()

    async def _save_name(self, e: Any = None) -> None:
        name = (self.name.value or "").strip()
        if len(name) > 80:
            self.name.error = self.t("errors.too_long")
            self.update()
            return
        self.name.error = None
        _ok, problem = await self.ctx.attempt(self.services.set_worker_name(name))
        self.ctx.toast(self.ctx.words(problem) if problem else self.t("settings.saved"), error=bool(problem))

    async def _save_server(self, e: Any = None) -> None:
        _ok, problem = await self.ctx.attempt(self.services.set_server_url(self.server.value or ""))
        if problem:
            self.server.error = self.ctx.words(problem)
            self.update()
            return
        self.server.error = None
        self.ctx.toast(self.t("settings.saved"))

    async def _sync_now(self, e: Any = None) -> None:
        await self.services.sync.run_now()
        info, _p = await self.ctx.attempt(self.services.device_info())
        if info is not None:
            self._fill_device(info)
        self.update()

    async def _invite(self, e: Any = None) -> None:
        await invite_now(self.ctx)
