"""First run: join a team (server address and one-time code), choose a PIN or passphrase, and see
this device's fingerprint (and, for the team's first device, the recovery code). Or use the app
without a team for now. `JoinScreen` is the same form for a device that already has its PIN.

An address that came with the app (`make run`, a setup that knows its server) is folded under
"Avanceret", one tap away: a worker types the code only. Without one, the address is asked first.
"""

from __future__ import annotations

from typing import Any

import flet as ft

from ...i18n import LANGUAGES
from ...state import JoinOutcome
from ..components.ui import ErrorLine, banner, muted, page_body, primary_button, text_button, text_field, tid
from .base import Ctx, Screen

__all__ = ["SetupScreen", "JoinScreen", "language_switch"]


def language_switch(ctx: Ctx, on_change: Any) -> ft.Control:
    t = ctx.t
    seg = ft.SegmentedButton(
        segments=[ft.Segment(value=lang, label=ft.Text(t(f"language.{lang}"))) for lang in LANGUAGES],
        selected=[ctx.t.lang], on_change=on_change, show_selected_icon=False,
    )
    return tid(seg, "language", t("settings.language"))


class SetupScreen(Screen):
    title_key = "setup.title"
    shell = False
    need_pin = True

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        carry: dict[str, str] = ctx.memory.pop("setup", {})
        t = self.t
        cfg = ctx.config
        self.server_box, self.server = text_field(
            t("setup.server"), "setup-server", value=carry.get("server", cfg.server_url or ""),
            hint="https://…", keyboard=ft.KeyboardType.URL, prefix_icon=ft.Icons.DNS_OUTLINED)
        self.server_known = bool(self.server.value)
        self.server_said = ft.Text(t("setup.advanced_server", url=self.server.value or ""), size=13)
        self.advanced = ft.ExpansionTile(
            title=ft.Text(t("setup.advanced")), subtitle=self.server_said, controls=[self.server_box],
            leading=ft.Icon(ft.Icons.TUNE), maintain_state=True, on_change=self._advanced_toggled,
            controls_padding=ft.Padding.only(top=8, bottom=8), tile_padding=ft.Padding.symmetric(horizontal=4),
            expanded_cross_axis_alignment=ft.CrossAxisAlignment.STRETCH,
        )
        self.code_box, self.code = text_field(
            t("setup.code"), "setup-code", value=carry.get("code", cfg.join_code or ""), hint="ABCD2345-…",
            prefix_icon=ft.Icons.KEY_OUTLINED,
            suffix=ft.IconButton(ft.Icons.CONTENT_PASTE, tooltip=t("setup.paste"), on_click=self._paste))
        self.name_box, self.name = text_field(t("setup.name"), "setup-name", value=carry.get("name", ""),
                                              hint=t("setup.name_hint"), prefix_icon=ft.Icons.BADGE_OUTLINED)
        strong = self.services.protection == "passphrase"
        self.pin_box, self.pin = text_field(t("setup.pin"), "setup-pin", password=True,
                                            hint=t("setup.pin_hint_strong" if strong else "setup.pin_hint"),
                                            prefix_icon=ft.Icons.PIN_OUTLINED)
        self.again_box, self.again = text_field(t("setup.pin_again"), "setup-pin-again", password=True,
                                                on_submit=self._join, prefix_icon=ft.Icons.PIN_OUTLINED)
        self.message = ErrorLine("setup-message")
        # in the button that was tapped, not beside it (a spinner beside a full-width button was
        # cut off at the edge of a 412 px phone)
        self.busy = tid(ft.ProgressRing(width=20, height=20, stroke_width=2.5), "setup-busy", t("common.working"))
        self.join_button = primary_button(t("setup.join"), self._join, "setup-join", icon=ft.Icons.GROUP_ADD)
        self.solo_button = text_button(t("setup.solo"), self._solo, "setup-solo")
        self.form = ft.Column(spacing=12, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.result = ft.Column(spacing=12, visible=False, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)

    # ------------------------------------------------------------------ build
    def _intro(self) -> list[ft.Control]:
        t = self.t
        notice: list[ft.Control] = []
        if self.ctx.notice is not None:  # why the app starts over (wiped, revoked)
            notice.append(banner(self.ctx.words(self.ctx.notice), tone="error", identifier="setup-notice",
                                 icon=ft.Icons.WARNING_AMBER))
            self.ctx.notice = None
        return [*notice,
            ft.Row([ft.Icon(ft.Icons.VOLUNTEER_ACTIVISM, size=36, color=ft.Colors.PRIMARY),
                    ft.Text(t("app.name"), size=28, weight=ft.FontWeight.BOLD, expand=True),
                    language_switch(self.ctx, self._language)]),
            ft.Semantics(content=ft.Text(t(self.title_key), size=22, weight=ft.FontWeight.W_600), header=True),
            muted(t("setup.intro_code" if self.server_known else "setup.intro"), size=15),
        ]

    def build(self) -> ft.Control:
        t = self.t
        fields: list[ft.Control] = [self.code_box] if self.server_known else [self.server_box, self.code_box]
        if self.need_pin:
            # what protects a copy of the data file here, said before the PIN is chosen
            protection = tid(muted(t(f"setup.protection.{self.services.protection}")), "setup-protection")
            fields += [self.name_box, muted(t("setup.pin_intro")), protection, self.pin_box, self.again_box]
        if self.server_known:
            fields.append(tid(self.advanced, "setup-advanced"))
        self.form.controls = [*fields, self.message.control, self.join_button]
        if self.need_pin:
            self.form.controls += [muted(t("setup.solo_intro")), self.solo_button]
        else:
            self.form.controls.append(text_button(t("common.cancel"), lambda e: self.ctx.navigate("/settings"),
                                                  "setup-cancel"))
        return ft.SafeArea(page_body([*self._intro(), self.form, self.result], wide=self.ctx.wide, max_width=560), expand=True)

    # ------------------------------------------------------------------ actions
    def _carry(self) -> None:
        self.ctx.memory["setup"] = {"server": self.server.value or "", "code": self.code.value or "",
                                    "name": self.name.value or ""}

    async def _language(self, e: ft.Event[Any]) -> None:
        lang = list(e.control.selected or [self.t.lang])[0]
        await self.services.set_preferences(language=lang)
        self.ctx.set_language(lang)
        self._carry()
        if self.ctx.router:
            await self.ctx.router.rerender()

    async def _paste(self, e: Any = None) -> None:
        try:
            text = await self.ctx.clipboard.get()
        except Exception:  # no clipboard in this browser or platform
            text = None
        if text:
            self.code.value = text.strip()
            self.update()

    def _advanced_toggled(self, e: ft.Event[Any]) -> None:
        self.advanced.expanded = str(e.data).lower() == "true"  # kept in step: an error can open it again
        self.server_said.value = self.t("setup.advanced_server", url=(self.server.value or "").strip())
        self.update()

    def _clear_errors(self) -> None:
        for f in (self.server, self.code, self.pin, self.again):
            f.error = None
        self.message.show("")

    def _set_busy(self, busy: bool, tapped: ft.Semantics | None = None) -> None:
        """Both buttons off while one works; the spinner inside the one that was tapped."""
        for wrapper, key, icon in ((self.join_button, "setup.join", ft.Icons.GROUP_ADD),
                                   (self.solo_button, "setup.solo", None)):
            button = wrapper.content
            assert isinstance(button, (ft.Button, ft.TextButton))
            button.disabled = busy
            if busy and wrapper is tapped:
                button.content, button.icon = ft.Row([self.busy, ft.Text(self.t(key))], tight=True, spacing=12), None
            else:
                button.content, button.icon = self.t(key), icon
        self.update()

    def _show_errors(self, errors: dict[str, str]) -> None:
        t = self.t
        fields = {"server": self.server, "code": self.code, "pin": self.pin, "pin_again": self.again}
        for name, key in errors.items():
            if name in fields:
                fields[name].error = t(key, n=6)
            else:
                self.message.show(t(key))
        if "server" in errors and self.server_known:  # a problem with the address is shown, not folded away
            self.advanced.expanded = True

    async def _solo(self, e: Any = None) -> None:
        self._clear_errors()
        errors = self.services.check_pin(self.pin.value or "", self.again.value or "")
        if errors:
            self._show_errors(errors)
            self.update()
            return
        self._set_busy(True, self.solo_button)
        _ok, problem = await self.ctx.attempt(self.services.create_workspace(self.pin.value or "",
                                                                             self.name.value or ""))
        self._set_busy(False)
        if problem:
            self._show_errors({problem.field or "message": problem.key})
            self.update()
            return
        self.services.sync.start()
        self.ctx.navigate("/today")

    async def _join(self, e: Any = None) -> None:
        self._clear_errors()
        services = self.services
        url, code = (self.server.value or "").strip(), (self.code.value or "").strip()
        errors = services.check_join(url, code)
        if self.need_pin:
            errors.update(services.check_pin(self.pin.value or "", self.again.value or ""))
        if errors:
            self._show_errors(errors)
            self.update()
            return
        self._set_busy(True, self.join_button)
        if self.need_pin:
            _ok, problem = await self.ctx.attempt(services.create_workspace(self.pin.value or "",
                                                                            self.name.value or ""))
            if problem:
                self._set_busy(False)
                self._show_errors({problem.field or "message": problem.key})
                self.update()
                return
            # the PIN is set now: a failed join below is tried again without it
            self.need_pin = False
            for box in (self.name_box, self.pin_box, self.again_box):
                box.visible = False
            self.solo_button.visible = False
            services.sync.start()
        outcome, problem = await self.ctx.attempt(services.join(url, code))
        self._set_busy(False)
        if problem or outcome is None:
            assert problem is not None
            self._show_errors({problem.field or "message": problem.key})
            if not problem.field:
                self.message.show(self.ctx.words(problem))
            self.update()
            return
        self._show_result(outcome)

    def _show_result(self, outcome: JoinOutcome) -> None:
        t = self.t
        self.form.visible = False
        role = t(f"role.{outcome.role}")
        lines: list[ft.Control] = [
            tid(ft.Text(t("setup.joined", team=outcome.team_name, role=role), size=18, weight=ft.FontWeight.W_600),
                "setup-joined"),
        ]
        if outcome.status == "pending":
            lines.append(muted(t("setup.pending"), size=15))
        lines += [
            muted(t("setup.fingerprint"), size=14),
            tid(ft.Text(outcome.fingerprint, size=22, font_family="monospace",
                        weight=ft.FontWeight.BOLD), "setup-fingerprint"),
            # the coordinator is the one who compares: it is told what others compare with it
            muted(t("setup.fingerprint_hint_coordinator" if outcome.role == "coordinator" else "setup.fingerprint_hint"),
                  size=13),
        ]
        if outcome.recovery_code:
            lines += [
                ft.Container(ft.Column([
                    ft.Row([ft.Icon(ft.Icons.WARNING_AMBER, color=ft.Colors.ON_TERTIARY_CONTAINER),
                            ft.Text(t("setup.recovery_title"), weight=ft.FontWeight.BOLD, expand=True)]),
                    ft.Text(t("setup.recovery_hint"), size=14),
                    tid(ft.Text(outcome.recovery_code, size=18, font_family="monospace",
                                weight=ft.FontWeight.BOLD), "setup-recovery"),
                    text_button(t("common.copy"), lambda e: self._copy(outcome.recovery_code or ""),
                                "setup-recovery-copy", icon=ft.Icons.COPY),
                ], spacing=8), bgcolor=ft.Colors.TERTIARY_CONTAINER, padding=16, border_radius=12),
            ]
        lines.append(primary_button(t("setup.continue"), lambda e: self.ctx.navigate("/today"), "setup-continue",
                                    icon=ft.Icons.ARROW_FORWARD, expand=True))
        self.result.controls = lines
        self.result.visible = True
        self.update()

    def _copy(self, text: str) -> None:
        async def go() -> None:
            await self.ctx.clipboard.set(text)
            self.ctx.toast(self.t("common.copied"))

        self.spawn(go)


class JoinScreen(SetupScreen):
    """Join a team later, from Settings: the PIN is already chosen."""

    title_key = "setup.join_title"
    need_pin = False

    async def load(self) -> None:
        info = await self.services.device_info()
        if info.joined:
            self.ctx.navigate("/settings")
