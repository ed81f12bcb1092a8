"""The desk's devices: invite a device (the one-time code as text and as a QR code), the pending
ones (their proofs are checked on this device when the list is fetched, and those that pass are
let in), each device's role, state, last sync and fingerprint (to compare with the joining phone's
own screen), revoking a device (the server refuses it at once, it wipes itself on its next
contact, and a new key epoch goes to the devices that remain), and the recovery code's status.
With "compare fingerprints" switched on, a pending device is let in only once the coordinator typed
the fingerprint the joining phone shows and it matched (a difference is said at the field).
Needs the server: offline, it says so and shows nothing stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import flet as ft

from ...state import DeskDevice, DevicesView, Invite
from ..components.rows import ago
from ..components.ui import (
    banner,
    empty_state,
    labelled,
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

__all__ = ["DevicesScreen", "show_invite", "invite_now"]

T = TypeVar("T")
_STATUS_ICONS = {"pending": ft.Icons.HOURGLASS_TOP, "active": ft.Icons.CHECK_CIRCLE_OUTLINE,
                 "revoked": ft.Icons.BLOCK, "rejected": ft.Icons.GPP_BAD_OUTLINED}


def show_invite(ctx: Ctx, invite: Invite) -> None:
    """The invite dialog: the code to type or paste, and its QR code to scan."""
    t = ctx.t

    async def copy(ev: Any) -> None:
        await ctx.clipboard.set(invite.code)
        ctx.toast(t("common.copied"))

    dialog = ft.AlertDialog(
        title=ft.Text(t("invite.title")),
        content=ft.Column([
            ft.Text(t("invite.intro_hours", hours=f"{invite.hours:g}"), size=15),
            tid(ft.Text(invite.code, size=20, font_family="monospace", weight=ft.FontWeight.BOLD), "invite-code"),
            tid(ft.Image(src=invite.qr_png, width=220, height=220, semantics_label=t("invite.qr")), "invite-qr",
                t("invite.qr")),
            muted(t("invite.after"), size=13),
        ], tight=True, spacing=12, width=420, horizontal_alignment=ft.CrossAxisAlignment.CENTER,
            scroll=ft.ScrollMode.AUTO),
        actions=[text_button(t("common.copy"), copy, "invite-copy", icon=ft.Icons.COPY),
                 text_button(t("common.close"), lambda ev: ctx.page.pop_dialog(), "invite-close")],
    )
    ctx.page.show_dialog(dialog)


async def invite_now(ctx: Ctx) -> bool:
    """Make a one-time code (needs the server) and show it; a problem is said in a toast."""
    invite, problem = await ctx.attempt(ctx.services.desk.invite())
    if problem or invite is None:
        ctx.toast(ctx.words(problem) if problem else "", error=True)
        return False
    show_invite(ctx, invite)
    return True


class DevicesScreen(DeskScreen):

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        self.listed: DevicesView | None = None  # the list as last shown (names for what a revoke says)
        self.list = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.facts = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.notice = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        # shown once the list came: the setting is this device's, but it only matters with the server
        self.confirms = ft.Switch(label=ctx.t("devices.confirm_switch"), value=False, on_change=self._set_confirms)
        self.confirms_box = ft.Column([tid(self.confirms, "devices-confirm-switch"),
                                       muted(ctx.t("devices.confirm_hint"), size=13)], spacing=2, visible=False)

    def build(self) -> ft.Control:
        t = self.t
        self.list.controls = [ft.ProgressRing(width=32, height=32)]
        return page_body([
            desk_tabs(self.ctx, "devices"),
            muted(t("devices.intro")),
            ft.Row([
                primary_button(t("settings.invite"), self._invite, "devices-invite", icon=ft.Icons.PERSON_ADD_ALT),
                secondary_button(t("devices.refresh"), self._refresh, "devices-refresh", icon=ft.Icons.REFRESH),
            ], wrap=True, spacing=8),
            self.confirms_box,
            self.notice,
            section_title(t("devices.list")),
            muted(t("devices.fingerprint_hint"), size=13),
            tid(self.list, "devices-list", container=True),
            section_title(t("devices.keys")),
            self.facts,
            section_title(t("devices.checkpoint_title")),
            muted(t("devices.checkpoint_hint"), size=13),
            ft.Row([secondary_button(t("devices.checkpoint"), self._checkpoint, "devices-checkpoint",
                                     icon=ft.Icons.SAVE_ALT)], wrap=True),
            ft.Container(height=24),
        ], wide=self.ctx.wide, max_width=900)

    async def load(self) -> None:
        view, problem = await self.ctx.attempt(self.services.desk.devices())
        if problem or view is None:
            assert problem is not None
            self.list.controls = [banner(self.ctx.words(problem), tone="error", identifier="devices-error",
                                         icon=ft.Icons.CLOUD_OFF)]
            self.facts.controls = []
            self.confirms_box.visible = False
            return
        await self.services.desk.remember_device_names(view)
        self._show(view)

    def _show(self, view: DevicesView) -> None:
        t = self.t
        self.listed = view
        self.notice.controls = [banner(t("devices.admitted", n=view.admitted), identifier="devices-admitted",
                                       icon=ft.Icons.VERIFIED_USER)] if view.admitted else []
        self.confirms.value = view.confirms_devices
        self.confirms_box.visible = True
        self.list.controls = [self._tile(d) for d in view.devices] or [empty_state(t("devices.none"))]
        self._fill_facts(view)

    async def on_data_changed(self) -> None:
        pass  # the list comes from the server: fetched on open and on "refresh", not on every sync

    def _fill_facts(self, view: DevicesView) -> None:
        t = self.t
        if view.recovery_here:
            recovery = t("devices.recovery_made", when=t.date(view.recovery_made)) if view.recovery_made \
                else t("devices.recovery_here")
        else:
            recovery = t("devices.recovery_none")
        self.facts.controls = [
            labelled(t("devices.epoch"), str(view.current_epoch), "devices-epoch"),
            labelled(t("devices.open_invites"), str(view.invites_pending), "devices-open-invites"),
            labelled(t("devices.recovery"), recovery, "devices-recovery"),
        ]

    def _tile(self, d: DeskDevice) -> ft.Control:
        t = self.t
        status = t(f"device_status.{d.status}")
        lines = [f"{t(f'role.{d.role}')} · {status}",
                 t("devices.last_sync", when=ago(t, d.last_seen)) if d.status == "active" else
                 t("devices.joined", when=t.datetime(d.joined_at))]
        if d.key_epoch and d.status == "active":
            lines.append(t("devices.key_epoch", n=d.key_epoch))
        if d.awaiting_confirmation:
            lines.append(t("devices.awaiting"))
        if d.retiring:
            lines.append(t("devices.retiring"))
        name = d.name + (f" ({t('devices.this')})" if d.this_device else "")
        actions: list[ft.Control] = []
        short = d.device_id[:8]
        if d.status == "active" and not d.this_device and not d.retiring:
            actions.append(secondary_button(t("devices.retire"), self._retire(d), f"device-retire-{short}",
                                            icon=ft.Icons.LOGOUT))
        if d.status in ("active", "pending") and not d.this_device:
            actions.append(secondary_button(t("devices.revoke"), self._revoke(d), f"device-revoke-{short}",
                                            icon=ft.Icons.BLOCK))
        subtitle: list[ft.Control] = [ft.Text(x, size=14) for x in lines]
        if d.fingerprint:  # compared with the joining phone's own screen before it is trusted
            printed = t("devices.fingerprint", fingerprint=d.fingerprint)
            subtitle.append(ft.Text(printed, size=14, font_family="monospace"))
            lines.append(printed)
        tile = ft.ListTile(
            leading=ft.Icon(ft.Icons.FINGERPRINT if d.awaiting_confirmation else
                            _STATUS_ICONS.get(d.status, ft.Icons.DEVICES)),
            title=ft.Text(name, weight=ft.FontWeight.W_600),
            subtitle=ft.Column(subtitle, spacing=2),
            min_height=64,
        )
        row = tid(tile, f"device-{short}", f"{name}: {' · '.join(lines)}")
        parts: list[ft.Control] = [row]
        if actions:  # under the tile: two buttons do not fit beside it on a phone
            parts.append(ft.Container(ft.Row(actions, spacing=8, wrap=True),
                                      padding=ft.Padding.only(left=56, right=16, bottom=8)))
        if d.awaiting_confirmation:
            parts.append(self._let_in_form(d))
        return parts[0] if len(parts) == 1 else ft.Column(parts, spacing=4)

    def _let_in_form(self, d: DeskDevice) -> ft.Control:
        """The fingerprint the joining phone shows, typed in, and "Let in"; a problem at the field."""
        t, short = self.t, d.device_id[:8]
        box, field = text_field(t("devices.fingerprint_seen"), f"device-fingerprint-{short}",
                                hint="XXXX XXXX XXXX XXXX XXXX", expand=True, prefix_icon=ft.Icons.FINGERPRINT)
        field.capitalization = ft.TextCapitalization.CHARACTERS
        field.autocorrect = False
        field.enable_suggestions = False
        let_in = self._let_in(d, field)
        field.on_submit = let_in
        button = primary_button(t("devices.let_in"), let_in, f"device-let-in-{short}", icon=ft.Icons.HOW_TO_REG)
        return ft.Container(ft.Row([box, button], spacing=8, vertical_alignment=ft.CrossAxisAlignment.START),
                            padding=ft.Padding.only(left=56, right=16, bottom=12))

    # ------------------------------------------------------------------ actions
    async def _refresh(self, e: Any = None) -> None:
        await self.load()
        self.update()

    async def _checkpoint(self, e: Any = None) -> None:
        """Sync, then write a checkpoint new devices start from (say what came of it)."""
        made, problem = await self.ctx.attempt(self.services.desk.checkpoint())
        if problem:
            self.ctx.toast(self.ctx.words(problem), error=True)
        elif made is None:
            self.ctx.toast(self.t("devices.checkpoint_none"))
        else:
            self.ctx.toast(self.t("devices.checkpoint_done", mb=f"{made.size / 1e6:.1f}"))

    async def _invite(self, e: Any = None) -> None:
        if await invite_now(self.ctx):
            await self.load()
            self.update()

    async def _set_confirms(self, e: Any = None) -> None:
        on = bool(self.confirms.value)
        _done, problem = await self.ctx.attempt(self.services.desk.set_confirms_devices(on))
        if problem:
            self.confirms.value = not on
            self.ctx.toast(self.ctx.words(problem), error=True)
            self.update()
            return
        self.ctx.toast(self.t("devices.confirm_on" if on else "devices.confirm_off"))
        await self.load()  # a device that waited may be let in now, or wait from now on
        self.update()

    def _let_in(self, d: DeskDevice, field: ft.TextField) -> Any:
        async def let_in(e: Any = None) -> None:
            field.error = None
            view, problem = await self.ctx.attempt(self.services.desk.confirm_device(d.device_id, field.value or ""))
            if problem or view is None:
                assert problem is not None
                field.error = self.ctx.words(problem)
                self.update()
                return
            if any(x.device_id == d.device_id and x.status == "active" for x in view.devices):
                self.ctx.toast(self.t("devices.let_in_done", name=d.name))
            await self.services.desk.remember_device_names(view)
            self._show(view)
            self.update()

        return let_in

    def _ask_then(self, d: DeskDevice, action: str, *, icon: Any, text: Callable[[], str],
                  work: Callable[[], Awaitable[T]], done: Callable[[T | None], str]) -> Any:
        """The handler of a device action that cannot be undone: ask first (`devices.<action>_title`,
        `text()`, the button `devices.<action>`), then do `work()`, say `done(its result)` or the
        problem, and show the list again."""
        t = self.t

        async def confirmed(e: Any = None) -> None:
            self.ctx.page.pop_dialog()
            result, problem = await self.ctx.attempt(work())
            if problem:
                self.ctx.toast(self.ctx.words(problem), error=True)
                return
            self.ctx.toast(done(result))
            await self.load()
            self.update()

        def ask(e: Any = None) -> None:
            self.ctx.confirm(t(f"devices.{action}_title", name=d.name), ft.Text(text(), size=15, width=420),
                             confirm=t(f"devices.{action}"), on_confirm=confirmed, identifier=action, icon=icon)

        return ask

    def _retire(self, d: DeskDevice) -> Any:
        t = self.t
        return self._ask_then(d, "retire", icon=ft.Icons.LOGOUT, text=lambda: t("devices.retire_text"),
                              work=lambda: self.services.desk.retire(d.device_id),
                              done=lambda _none: t("devices.retire_asked", name=d.name))

    def _revoke(self, d: DeskDevice) -> Any:
        t = self.t

        def text() -> str:  # how much the device may lose, as of the question
            loss = t("devices.revoke_loss", when=ago(t, d.last_seen)) if d.last_seen else t("devices.revoke_loss_never")
            return t("devices.revoke_text") + "\n\n" + loss

        def done(report: Any) -> str:
            names = {x.device_id: x.name for x in self.listed.devices} if self.listed else {}
            keyed = ", ".join(names.get(k, k[:8]) for k in report.keyed)  # exactly who got the new key
            return t("devices.revoked", name=d.name, epoch=report.epoch, devices=keyed)

        return self._ask_then(d, "revoke", icon=ft.Icons.BLOCK, text=text,
                              work=lambda: self.services.desk.revoke(d.device_id), done=done)
