"""New contact: who (search as you type, anonymous, or a new person with just an alias), where
(recent places first, or a new one; the phone's position only when the worker asks), what (kind,
services, referrals, where the person sleeps tonight), a note and a follow-up date. Saving writes
locally at once and never waits for the network; a known person at a known place takes three taps
plus the note: "new contact", the person (their usual place is picked), "save".
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import flet as ft

from models.domain.vocab import ContactKind, Living, Referral, Service

from ...state import SEARCH_PAUSE, ContactChoices, ContactDraft, PersonRow, PlaceRow
from ..components.ui import (
    ErrorLine,
    choice_chip,
    dropdown,
    muted,
    page_body,
    section_title,
    text_button,
    text_field,
    tid,
)
from .base import Ctx, Screen

__all__ = ["NewContactScreen"]

_RECENT_PLACES = 8
FORM_WIDTH = 720  # the form's width at most, on a wide window (its save bar lines up with it)


# Seconds between "saved" and leaving the form. The browser needs a frame (40-80 ms in web mode
# here) to show the message; a route change sent before that frame is drawn waits with it for the
# next screen's (~80 ms more). At 50 ms that happened to one save in ten (bench.ui: p95 113-132 ms);
# at 120 ms the p95 is 70-96 ms, and Today comes 70 ms later (save_to_today p95 ~270-335 ms).
CONFIRM_FIRST = 0.12


class NewContactScreen(Screen):
    title_key = "contact.new_title"
    nav = "today"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        self.back = f"/people/{params['person']}" if params.get("person") else "/today"
        self.draft = ContactDraft(when_text=datetime.now().strftime("%d-%m-%Y %H:%M"))
        self.choices = ContactChoices([], [])
        self.all_places: list[PlaceRow] = []
        self._search_task: asyncio.TimerHandle | None = None
        self._saving = False
        self._done = False  # saved, or thrown away on purpose: leaving asks nothing

        self.person_error = ErrorLine("nc-person-error")
        self.person_chosen = ft.Row(wrap=True)
        self.search_box, self.search = text_field(
            t("contact.search_person"), "nc-person-search", hint=t("contact.search_hint"),
            on_change=self._on_search, prefix_icon=ft.Icons.SEARCH, autofocus=True)
        self.results = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        # made once and only relabelled as one types: a chip replaced on every keystroke could
        # swallow the tap that was meant for it
        self.new_person_chip = choice_chip(t("contact.new_person_named", alias=""), False, self._new_person,
                                           "nc-new-person", icon=ft.Icons.PERSON_ADD_ALT)
        self.person_actions = ft.Row([
            choice_chip(t("contact.anonymous"), False, self._anonymous, "nc-anonymous", icon=ft.Icons.PERSON_OFF_OUTLINED),
            self.new_person_chip,
        ], wrap=True, spacing=8)
        self.place_error = ErrorLine("nc-place-error")
        self.place_chips = ft.Row(wrap=True, spacing=8, run_spacing=8)
        self.new_place_box, self.new_place = text_field(t("contact.new_place"), "nc-new-place",
                                                        hint=t("contact.new_place_hint"), on_change=self._on_new_place,
                                                        prefix_icon=ft.Icons.ADD_LOCATION_ALT_OUTLINED)
        self.position = ft.Text("", size=13, color=ft.Colors.ON_SURFACE_VARIANT)
        self.kind_chips = ft.Row(wrap=True, spacing=8, run_spacing=8)
        self.service_chips = ft.Row(wrap=True, spacing=8, run_spacing=8)
        self.referral_chips = ft.Row(wrap=True, spacing=8, run_spacing=8)
        self.living_box, self.living = dropdown(
            t("contact.living"), "nc-living",
            [("", t("contact.living_unset"))] + [(v.value, t.vocab("living", v)) for v in Living],
            value="", on_select=self._on_living, expand=True)
        self.note_box, self.note = text_field(t("contact.note"), "nc-note", multiline=True,
                                              on_change=self._on_note, max_length=4000)
        self.follow_box, self.follow = text_field(t("contact.follow_up"), "nc-follow-up",
                                                  hint=t("common.date_hint"), expand=True,
                                                  on_change=self._on_follow, prefix_icon=ft.Icons.EVENT)
        self.when_box, self.when = text_field(t("contact.when"), "nc-when", value=self.draft.when_text,
                                              hint=t("common.datetime_hint"), on_change=self._on_when,
                                              prefix_icon=ft.Icons.SCHEDULE)
        self.save_error = ErrorLine("nc-save-error")

    # ------------------------------------------------------------------ build
    def build(self) -> ft.Control:
        t = self.t
        self._draw_person()
        self._draw_kinds()
        self._draw_services()
        self._draw_referrals()
        follow_row = ft.Row([
            self.follow_box,
            tid(ft.IconButton(ft.Icons.CALENDAR_MONTH, tooltip=t("contact.pick_date"), on_click=self._pick_date,
                              width=48, height=48), "nc-follow-up-pick", t("contact.pick_date")),
        ], vertical_alignment=ft.CrossAxisAlignment.START)
        quick = ft.Row([
            choice_chip(t("contact.tomorrow"), False, lambda e: self._set_follow(date.today() + timedelta(days=1)),
                        "nc-fu-tomorrow"),
            choice_chip(t("contact.in_a_week"), False, lambda e: self._set_follow(date.today() + timedelta(days=7)),
                        "nc-fu-week"),
        ], wrap=True, spacing=8)
        # one subtree for who the contact is with: a keystroke or a chip redraws it alone, not the
        # whole form (Flet diffs whatever `update()` is called on; the page is ~10x the work)
        self.person_section = ft.Column([self.person_chosen, self.search_box, self.results, self.person_actions,
                                         self.person_error.control], spacing=8,
                                        horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        form = page_body([
            section_title(t("contact.who")),
            self.person_section,
            section_title(t("contact.where")),
            self.place_chips, self.new_place_box,
            ft.Row([text_button(t("contact.use_position"), self._locate, "nc-locate", icon=ft.Icons.MY_LOCATION),
                    self.position], wrap=True),
            self.place_error.control,
            section_title(t("contact.note")), self.note_box,
            section_title(t("contact.services")), self.service_chips,
            section_title(t("contact.kind")), self.kind_chips,
            section_title(t("contact.follow_up")), follow_row, quick,
            section_title(t("contact.referrals")), self.referral_chips,
            section_title(t("contact.living")), self.living_box,
            section_title(t("contact.when")), self.when_box,
            self.save_error.control,
        ], wide=self.ctx.wide, max_width=FORM_WIDTH)
        return ft.Column([tid(form, "nc-form", container=True), self._save_bar()], spacing=0, expand=True,
                         horizontal_alignment=ft.CrossAxisAlignment.STRETCH)

    def _save_bar(self) -> ft.Control:
        """"Gem" in a bar of its own under the form, not floating over it: at 412 px a floating
        button covered the last service chips; under the form nothing can scroll beneath it."""
        wide = self.ctx.wide
        button = ft.FilledButton(
            content=ft.Row([ft.Icon(ft.Icons.CHECK), ft.Text(self.t("contact.save"), size=18, weight=ft.FontWeight.BOLD)],
                           tight=True, spacing=8),
            on_click=self._save, height=56, width=200 if wide else None, expand=None if wide else True,
            style=ft.ButtonStyle(shape=ft.RoundedRectangleBorder(radius=16)),
        )
        row: ft.Control = ft.Row([tid(button, "nc-save")], alignment=ft.MainAxisAlignment.END)
        if wide:  # at the right edge of the centred form above it, not of the window
            row = ft.Row([ft.Container(row, width=FORM_WIDTH - 32)], alignment=ft.MainAxisAlignment.CENTER)
        return ft.Container(row, padding=ft.Padding.symmetric(horizontal=16, vertical=8),
                            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
                            border=ft.Border.only(top=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)))

    # ------------------------------------------------------------------ load
    async def load(self) -> None:
        choices, problem = await self.ctx.attempt(self.services.contact_choices())
        if problem or choices is None:
            return
        self.choices = choices
        self.all_places = list(choices.places)
        if choices.suggested_place_id:
            self._select_place(choices.suggested_place_id)
        self._show_results(choices.recent_persons)
        pid = self.params.get("person")
        if pid:
            row = await self.services.person_row(pid)
            if row is not None:
                await self._pick(row)
        self._draw_places()

    # ------------------------------------------------------------------ person
    def _draw_person(self) -> None:
        t, d = self.t, self.draft
        chosen: list[ft.Control] = []
        if d.has_person:
            label = t("contact.anonymous") if d.anonymous else (d.person_label or d.new_person_alias)
            if d.new_person_alias and not d.person_id:
                label = t("contact.new_person_named", alias=d.new_person_alias)
            chip = ft.Chip(label=ft.Text(label, size=16, weight=ft.FontWeight.W_600),
                           leading=ft.Icon(ft.Icons.PERSON), on_delete=self._clear_person,
                           delete_icon_tooltip=t("contact.change_person"))
            chosen.append(tid(chip, "nc-person-chosen"))
        self.person_chosen.controls = chosen
        self.search_box.visible = not d.has_person
        self.results.visible = not d.has_person
        self.person_actions.visible = not d.has_person
        text = (self.search.value or "").strip()
        new_chip = self.new_person_chip.content
        assert isinstance(new_chip, ft.Chip) and isinstance(new_chip.label, ft.Text)
        new_chip.label.value = t("contact.new_person_named", alias=text)
        self.new_person_chip.visible = bool(text)

    def _show_results(self, rows: list[PersonRow]) -> None:
        t = self.t
        controls: list[ft.Control] = []
        for row in rows:
            seen = t("person.last_contact", when=t.date(row.last_contact) if row.last_contact else t("time.never"))
            tile = ft.ListTile(
                leading=ft.CircleAvatar(content=ft.Text(row.alias[:1].upper()), radius=18),
                title=ft.Text(row.alias, size=16, weight=ft.FontWeight.W_600), subtitle=ft.Text(seen, size=13),
                on_click=self._pick_handler(row), min_height=52, dense=True,
            )
            controls.append(tid(tile, f"pick-{row.id}"))
        if not rows and (self.search.value or "").strip():
            controls.append(muted(t("contact.no_match"), size=14))
        self.results.controls = controls

    def _pick_handler(self, row: PersonRow) -> Any:
        async def pick(e: Any) -> None:
            await self._pick(row)
            self.update()
            # the person is known, the place is guessed: what is left is what happened (one tap saved)
            await self.note.focus()

        return pick

    async def _pick(self, row: PersonRow) -> None:
        self.draft.choose_person(row.id, row.alias)
        self.person_error.show("")
        self._draw_person()
        if self.draft.place_id is None and not self.draft.new_place_name:
            hint = await self.services.place_hint(row.id)
            if hint:
                self._select_place(hint)
                self._draw_places()

    def _anonymous(self, e: Any) -> None:
        self.draft.choose_person(None, anonymous=True)
        self.person_error.show("")
        self._draw_person()
        self._redraw(self.person_section)

    def _new_person(self, e: Any) -> None:
        self.draft.choose_person(None, new_alias=(self.search.value or "").strip())
        self.person_error.show("")
        self._draw_person()
        self._redraw(self.person_section)

    def _clear_person(self, e: Any) -> None:
        self.draft.choose_person(None)
        self.search.value = ""
        self._draw_person()
        self._show_results(self.choices.recent_persons)
        self._redraw(self.person_section)

    def _on_search(self, e: Any) -> None:
        self.ctx.touch()
        self._draw_person()  # only the "new person: <text>" chip changes as one types
        self._redraw(self.person_actions)
        if self._search_task is not None:
            self._search_task.cancel()
        self._search_task = self.later(SEARCH_PAUSE, self._run_search)

    async def _run_search(self) -> None:
        text = self.search.value or ""
        rows, problem = await self.ctx.attempt(self.services.search_persons(text))
        if problem or rows is None or self.disposed or text != (self.search.value or ""):
            return
        self._show_results(rows)
        self._redraw(self.results)

    def _redraw(self, control: ft.Control) -> None:
        if not self.disposed:
            control.update()

    # ------------------------------------------------------------------ place
    def _select_place(self, place_id: str | None) -> None:
        label = next((p.name for p in self.all_places if p.id == place_id), "")
        self.draft.choose_place(place_id, label)

    def _draw_places(self) -> None:
        d = self.draft
        shown = self.all_places[:_RECENT_PLACES]
        if d.place_id and all(p.id != d.place_id for p in shown):
            shown = [p for p in self.all_places if p.id == d.place_id] + shown
        self.place_chips.controls = [
            choice_chip(p.name, p.id == d.place_id, self._place_handler(p.id), f"place-chip-{p.id}",
                        icon=ft.Icons.PLACE_OUTLINED)
            for p in shown
        ]

    def _place_handler(self, place_id: str) -> Any:
        def select(e: Any) -> None:
            self.ctx.touch()
            self._select_place(None if self.draft.place_id == place_id else place_id)
            self.new_place.value = ""
            self._draw_places()

        return select

    def _on_new_place(self, e: Any) -> None:
        name = (self.new_place.value or "").strip()
        self.draft.choose_place(None, new_name=name)
        self._draw_places()

    async def _locate(self, e: Any = None) -> None:
        """The phone's position, coarse, and only because the worker asked."""
        t = self.t
        try:
            from flet_geolocator import Geolocator

            locator = Geolocator()
            pos = await asyncio.wait_for(locator.get_current_position(), timeout=20)
        except Exception:  # no permission, no GPS, or not supported here: say so, do not fail
            self.ctx.toast(t("contact.position_unavailable"), error=True)
            return
        if pos.latitude is None or pos.longitude is None:
            self.ctx.toast(t("contact.position_unavailable"), error=True)
            return
        self.draft.lat, self.draft.lon = round(float(pos.latitude), 3), round(float(pos.longitude), 3)
        self.position.value = t("contact.position_added")
        self.update()

    # ------------------------------------------------------------------ what
    def _draw_kinds(self) -> None:
        t, d = self.t, self.draft
        self.kind_chips.controls = [
            choice_chip(t.vocab("kind", k), d.kind == k.value, self._kind_handler(k.value), f"kind-{k.value}")
            for k in ContactKind
        ]

    def _kind_handler(self, value: str) -> Any:
        def select(e: Any) -> None:
            self.draft.kind = value
            self._draw_kinds()

        return select

    def _draw_services(self) -> None:
        t, d = self.t, self.draft
        self.service_chips.controls = [
            choice_chip(t.vocab("service", s), s.value in d.services, self._toggle(d.services, s.value, self._draw_services),
                        f"service-{s.value}")
            for s in Service
        ]

    def _draw_referrals(self) -> None:
        t, d = self.t, self.draft
        self.referral_chips.controls = [
            choice_chip(t.vocab("referral", r), r.value in d.referrals,
                        self._toggle(d.referrals, r.value, self._draw_referrals), f"referral-{r.value}")
            for r in Referral
        ]

    def _toggle(self, bucket: set[str], value: str, redraw: Any) -> Any:
        def toggle(e: Any) -> None:
            self.ctx.touch()
            if value in bucket:
                bucket.discard(value)
            else:
                bucket.add(value)
            redraw()

        return toggle

    def _on_living(self, e: Any) -> None:
        self.draft.living = e.control.value or None

    def _on_note(self, e: Any) -> None:
        self.ctx.touch()
        self.draft.note = self.note.value or ""

    def _on_follow(self, e: Any) -> None:
        self.draft.follow_up_text = self.follow.value or ""
        self.follow.error = None

    def _on_when(self, e: Any) -> None:
        self.draft.when_text = self.when.value or ""
        self.when.error = None

    def _set_follow(self, day: date) -> None:
        self.follow.value = day.strftime("%d-%m-%Y")
        self.draft.follow_up_text = self.follow.value
        self.follow.error = None

    def _pick_date(self, e: Any = None) -> None:
        today = date.today()

        def chosen(ev: Any) -> None:
            value = ev.control.value
            if value:
                self._set_follow(value.date() if isinstance(value, datetime) else value)
                self.update()

        picker = ft.DatePicker(first_date=datetime(today.year, today.month, today.day),
                               last_date=datetime(today.year + 2, 12, 31), on_change=chosen,
                               help_text=self.t("contact.follow_up"))
        self.ctx.page.show_dialog(picker)

    # ------------------------------------------------------------------ save
    def _show_errors(self, errors: dict[str, str]) -> None:
        t = self.t
        self.person_error.show(t(errors["person"]) if "person" in errors else "")
        self.place_error.show(t(errors["place"]) if "place" in errors else "")
        self.follow.error = t(errors["follow_up"]) if "follow_up" in errors else None
        self.when.error = t(errors["when"]) if "when" in errors else None
        self.note.error = t(errors["note"]) if "note" in errors else None
        self.save_error.show(t("errors.form_has_problems") if errors else "")

    def unsaved(self) -> bool:
        d = self.draft
        typed = ((self.note.value or "").strip() or (self.follow.value or "").strip() or d.services or d.referrals
                 or d.living or d.new_person_alias or d.new_place_name)
        chosen = (d.person_id is not None and d.person_id != self.params.get("person")) or d.anonymous
        return not self._done and bool(typed or chosen)

    def discard(self) -> None:
        self._done = True

    async def _save(self, e: Any = None) -> None:
        if self._saving:
            return
        d = self.draft
        d.note = self.note.value or ""
        d.follow_up_text = self.follow.value or ""
        d.when_text = self.when.value or ""
        errors = d.check(datetime.now())
        self._show_errors(errors)
        if errors:
            self.update()
            return
        self._saving = True
        contact_id, problem = await self.ctx.attempt(self.services.save_contact(d))
        self._saving = False
        if problem or contact_id is None:
            assert problem is not None
            field = {"person_id": "person", "place_id": "place", "at": "when"}.get(problem.field or "", problem.field)
            self._show_errors({field or "save": "errors.invalid"} if field in ("person", "place", "follow_up", "when", "note")
                              else {})
            self.save_error.show(self.ctx.words(problem))
            self.update()
            return
        self.ctx.toast(self.t("contact.saved"))
        # "saved" first, then the page change (see CONFIRM_FIRST)
        await asyncio.sleep(CONFIRM_FIRST)
        self._done = True
        self.ctx.navigate(self.back or "/today")
