"""The desk's data protection (GDPR): the retention review (persons with no contact for a chosen
time, default 24 months: erase, or keep with a reason), erasure (art. 17: a confirmation that says
what will go, then a purge on the server and every device; an erasure record without personal
data stays), access requests (art. 15: everything stored about one person, readable, and as files)
and the audit log (who read, changed, exported or erased what, when, from which device; filtered by
person, worker and action). The erase and access dialogs are shared with the person page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import flet as ft

from models.domain.vocab import AuditAction

from ...services.desk import default_export_dir
from ...state import AuditRow, RetentionRow, parse_count
from ..components.ui import (
    ErrorLine,
    banner,
    dropdown,
    empty_state,
    muted,
    page_body,
    primary_button,
    secondary_button,
    section_title,
    text_button,
    text_field,
    tid,
)
from .base import Ctx
from .desk import DeskScreen, desk_tabs

__all__ = ["PrivacyScreen", "ask_erase", "show_access", "export_folder"]


def export_folder(ctx: Ctx) -> str:
    """The folder files for the coordinator go to this session (their documents folder unless
    they chose another one)."""
    return str(ctx.memory.setdefault("export_dir", str(default_export_dir())))


async def ask_erase(ctx: Ctx, person_id: str, after: Callable[[], Awaitable[None]]) -> None:
    """Erasure with a confirmation that says what goes; `after` runs once it is done."""
    t = ctx.t
    preview, problem = await ctx.attempt(ctx.services.desk.erasure_preview(person_id))
    if problem or preview is None:
        ctx.toast(ctx.words(problem) if problem else "", error=True)
        return
    box, confirm_field = text_field(t("erase.type_alias", alias=preview.alias), "erase-typed")
    message = ErrorLine("erase-message")

    async def confirmed(ev: Any = None) -> None:
        if (confirm_field.value or "").strip().casefold() != preview.alias.strip().casefold():
            confirm_field.error = t("erase.type_mismatch")
            ctx.page.update()
            return
        confirm_field.error = None
        n, problem = await ctx.attempt(ctx.services.desk.erase(person_id))
        if problem:
            message.show(ctx.words(problem))  # e.g. offline: nothing was erased, try again
            ctx.page.update()
            return
        ctx.page.pop_dialog()
        ctx.toast(t("erase.done", n=n))
        await after()

    ctx.confirm(t("erase.title", alias=preview.alias), ft.Column([
        ft.Text(t("erase.what", contacts=preview.contacts, follow_ups=preview.follow_ups, records=preview.records),
                size=15),
        ft.Text(t("erase.stays"), size=14, color=ft.Colors.ON_SURFACE_VARIANT),
        box, message.control,
    ], tight=True, spacing=12, width=440), confirm=t("erase.confirm"), on_confirm=confirmed, identifier="erase",
        icon=ft.Icons.DELETE_FOREVER)


async def show_access(ctx: Ctx, person_id: str) -> None:
    """The access request: the readable document, and a button that writes it as a printable page
    and as JSON to the chosen folder."""
    t = ctx.t
    text, problem = await ctx.attempt(ctx.services.desk.access_text(person_id))
    if problem or text is None:
        ctx.toast(ctx.words(problem) if problem else "", error=True)
        return
    folder_box, folder = text_field(t("files.folder"), "access-folder", value=export_folder(ctx))

    async def save(ev: Any = None) -> None:
        ctx.memory["export_dir"] = folder.value or ""
        paths, problem = await ctx.attempt(ctx.services.desk.access_files(person_id, folder.value or ""))
        if problem or paths is None:
            folder.error = ctx.words(problem) if problem else None
            ctx.page.update()
            return
        folder.error = None
        ctx.page.pop_dialog()
        ctx.toast(t("access.saved", html=paths[0].name, json=paths[1].name, folder=str(paths[0].parent)))

    ctx.page.show_dialog(ft.AlertDialog(
        title=ft.Text(t("access.dialog_title")),
        content=ft.Column([
            tid(ft.Text(text, size=13, font_family="monospace"), "access-document"),
            muted(t("files.plain_warning"), size=13),
            folder_box,
        ], spacing=12, width=560, height=480, scroll=ft.ScrollMode.AUTO),
        actions=[text_button(t("common.close"), lambda ev: ctx.page.pop_dialog(), "access-close"),
                 primary_button(t("access.save"), save, "access-save", icon=ft.Icons.SAVE_ALT)],
    ))


class PrivacyScreen(DeskScreen):

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        mem = ctx.memory.setdefault("privacy", {"months": "24", "actor": "", "action": ""})
        if "person" in params:
            mem["person"] = params["person"]
        self.mem = mem
        self.months_box, self.months = text_field(t("retention.months"), "retention-months", value=mem["months"],
                                                  keyboard=ft.KeyboardType.NUMBER, width=200,
                                                  on_submit=self._on_months)
        self.retention = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.retention_title = ft.Container()
        self.actor_box, self.actor = dropdown(t("audit.worker"), "audit-worker", [("", t("common.all"))],
                                              value=mem["actor"], on_select=self._on_audit_filter, expand=True)
        self.action_box, self.action = dropdown(
            t("audit.action"), "audit-action", [("", t("common.all"))] + [(a.value, t.vocab("action", a))
                                                                         for a in AuditAction],
            value=mem["action"], on_select=self._on_audit_filter, expand=True)
        self.person_filter = ft.Container()
        self.audit = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.audit_title = ft.Container()

    def build(self) -> ft.Control:
        t = self.t
        self.retention.controls = [ft.ProgressRing(width=32, height=32)]
        return page_body([
            desk_tabs(self.ctx, "privacy"),
            self.retention_title,
            muted(t("retention.intro")),
            ft.Row([self.months_box, secondary_button(t("retention.show"), self._on_months, "retention-show")],
                   vertical_alignment=ft.CrossAxisAlignment.START, wrap=True),
            tid(self.retention, "retention-list", container=True),
            self.audit_title,
            muted(t("audit.intro")),
            ft.ResponsiveRow([ft.Container(self.actor_box, col={"xs": 12, "sm": 6}),
                              ft.Container(self.action_box, col={"xs": 12, "sm": 6})], spacing=8, run_spacing=8),
            self.person_filter,
            tid(self.audit, "audit-list", container=True),
            ft.Container(height=24),
        ], wide=self.ctx.wide, max_width=1000)

    async def load(self) -> None:
        await self._load_retention()
        await self._load_audit()

    # ------------------------------------------------------------------ retention
    async def _load_retention(self) -> None:
        t = self.t
        try:
            months = parse_count(self.mem["months"], low=1, high=600)
        except ValueError:
            self.months.error = t("retention.months_bad")
            return
        self.months.error = None
        rows, problem = await self.ctx.attempt(self.services.desk.retention(months))
        if problem or rows is None:
            self.retention.controls = [banner(self.ctx.words(problem) if problem else "", tone="error")]
            return
        self.retention_title.content = section_title(t("retention.title"), count=len(rows))
        self.retention.controls = [self._retention_tile(r, i) for i, r in enumerate(rows)] or [
            empty_state(t("retention.none", n=months), "retention-empty")]

    def _retention_tile(self, r: RetentionRow, i: int) -> ft.Control:
        t = self.t
        since = t("retention.not_met_since", date=t.date(r.since)) if r.last_contact else t(
            "retention.never_met", date=t.date(r.since))
        lines = [since]
        if r.kept_on:
            lines.append(t("retention.kept", date=t.date(r.kept_on), reason=r.reason or ""))
        ident = f"retention-{i}"
        actions = ft.Row([
            secondary_button(t("retention.keep"), self._keep(r), f"{ident}-keep", icon=ft.Icons.BOOKMARK_ADDED),
            secondary_button(t("erase.action"), self._erase(r.person_id), f"{ident}-erase", icon=ft.Icons.DELETE_FOREVER),
            text_button(t("review.open"), lambda e: self.ctx.navigate(f"/people/{r.person_id}"), f"{ident}-open"),
        ], wrap=True, spacing=4)
        body = ft.Container(ft.Column([ft.Text(r.alias, size=16, weight=ft.FontWeight.W_600),
                                       *[muted(x, size=13) for x in lines], actions], spacing=4),
                            padding=ft.Padding.symmetric(vertical=8, horizontal=4))
        return tid(body, ident, f"{r.alias}: {'; '.join(lines)}")

    async def _on_months(self, e: Any = None) -> None:
        self.mem["months"] = (self.months.value or "").strip()
        await self._load_retention()
        self.update()

    def _keep(self, r: RetentionRow) -> Any:
        async def ask(e: Any = None) -> None:
            t = self.t
            box, reason = text_field(t("retention.reason"), "keep-reason", multiline=True, value=r.reason or "")

            async def confirmed(ev: Any = None) -> None:
                if not (reason.value or "").strip():
                    reason.error = t("retention.reason_missing")
                    self.ctx.page.update()
                    return
                _ok, problem = await self.ctx.attempt(self.services.desk.keep(r.person_id, reason.value or ""))
                if problem:
                    reason.error = self.ctx.words(problem)
                    self.ctx.page.update()
                    return
                self.ctx.page.pop_dialog()
                self.ctx.toast(t("retention.kept_toast", alias=r.alias))
                await self.load()
                self.update()

            self.ctx.confirm(t("retention.keep_title", alias=r.alias),
                             ft.Column([muted(t("retention.keep_text")), box], tight=True, spacing=12, width=420),
                             confirm=t("retention.keep"), on_confirm=confirmed, identifier="keep")

        return ask

    def _erase(self, person_id: str) -> Any:
        async def erase(e: Any = None) -> None:
            async def after() -> None:
                await self.load()
                self.update()

            await ask_erase(self.ctx, person_id, after)

        return erase

    # ------------------------------------------------------------------ audit log
    async def _load_audit(self) -> None:
        t, mem = self.t, self.mem
        person = mem.get("person") or None
        result, problem = await self.ctx.attempt(self.services.desk.audit(
            person_id=person, actor=mem["actor"] or None, action=mem["action"] or None))
        if problem or result is None:
            self.audit.controls = [banner(self.ctx.words(problem) if problem else "", tone="error")]
            return
        rows, actors = result
        self.actor.options = [ft.DropdownOption(key="", text=t("common.all"))] + [
            ft.DropdownOption(key=a, text=a) for a in actors]
        self.actor.value = mem["actor"]
        if person:
            alias = next((r.target_alias for r in rows if r.target_id == person and r.target_alias), None)
            self.person_filter.content = ft.Row([
                muted(t("audit.only_person", alias=alias or person[:8])),
                text_button(t("audit.all_persons"), self._clear_person, "audit-all-persons", icon=ft.Icons.CLOSE),
            ], wrap=True)
        else:
            self.person_filter.content = None
        self.audit_title.content = section_title(t("audit.title"), count=len(rows))
        self.audit.controls = [self._audit_tile(r, i) for i, r in enumerate(rows)] or [
            empty_state(t("audit.none"), "audit-empty")]

    def _audit_tile(self, r: AuditRow, i: int) -> ft.Control:
        t = self.t
        what = t.vocab("record", r.target_type) if r.target_type else ""
        target = " ".join(x for x in [what, r.target_alias or (r.target_id[:8] if r.target_id else "")] if x)
        line = t("audit.line", when=t.datetime(r.at), actor=r.actor, action=t.vocab("action", r.action), target=target)
        sub = " · ".join(x for x in [t("audit.device", device=r.device_id[:8]), r.detail or ""] if x)
        tile = ft.ListTile(title=ft.Text(line, size=14, weight=ft.FontWeight.W_500), subtitle=ft.Text(sub, size=12),
                           dense=True, min_height=48,
                           on_click=(lambda e: self._only_person(r.target_id)) if r.target_type == "person" else None)
        return tid(tile, f"audit-{i}", f"{line} {sub}")

    async def _on_audit_filter(self, e: Any = None) -> None:
        self.mem["actor"] = self.actor.value or ""
        self.mem["action"] = self.action.value or ""
        await self._load_audit()
        self.update()

    def _only_person(self, person_id: str | None) -> None:
        self.mem["person"] = person_id
        self.spawn(self._reload_audit)

    async def _clear_person(self, e: Any = None) -> None:
        self.mem.pop("person", None)
        await self._reload_audit()

    async def _reload_audit(self) -> None:
        await self._load_audit()
        self.update()
