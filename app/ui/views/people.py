"""People: the team's by-name list (search as you type; filters by status, homeless category and
"not seen for N days"; the last contact of each), the person page (profile, safety note, conflicts
waiting for review in plain words, follow-ups, the timeline of contacts) and the person form.
On a wide window the list stays beside the person.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import date
from typing import Any

import flet as ft

from models.domain.vocab import Consent, Ethos, Gender, HomelessCategory, Need, Status

from ...state import (
    NOT_SEEN_CHOICES,
    SEARCH_PAUSE,
    ConflictRow,
    FollowUpRow,
    PersonDetail,
    PersonDraft,
    PersonRow,
    PlaceRow,
)
from ..components.rows import contact_tile, follow_up_tile, person_tile
from ..components.ui import (
    ErrorLine,
    banner,
    choice_chip,
    dropdown,
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
from .base import Ctx, Screen
from .privacy import ask_erase, show_access

__all__ = ["PeopleScreen", "PersonScreen", "PersonEditScreen", "PersonPanel"]

_VOCAB_FIELDS = {"status": "status", "consent": "consent", "category": "category", "ethos": "ethos",
                 "gender": "gender"}


# ====================================================================================== person
class PersonPanel:
    """The person page's content, for a screen of its own (phone) or beside the list (wide)."""

    def __init__(self, screen: Screen, person_id: str) -> None:
        self.screen = screen
        self.ctx = screen.ctx
        self.t = screen.t
        self.person_id = person_id
        self.column = ft.Column(spacing=8, scroll=ft.ScrollMode.AUTO, expand=True,
                                horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.detail: PersonDetail | None = None

    def build(self) -> ft.Control:
        self.column.controls = [ft.ProgressRing(width=32, height=32)]
        return ft.Container(self.column, padding=16, expand=True)

    async def load(self) -> None:
        detail, problem = await self.ctx.attempt(self.ctx.services.person_detail(self.person_id))
        if problem or detail is None:
            self.column.controls = [empty_state(self.t("person.not_found"), "person-missing")]
            return
        self.detail = detail
        self._fill(detail)

    def _value(self, field: str, value: Any) -> str:
        if value is None or value == "" or value == []:
            return self.t("common.none")
        if field in _VOCAB_FIELDS:
            return self.t.vocab(_VOCAB_FIELDS[field], value)
        return str(value)

    def _fill(self, d: PersonDetail) -> None:
        t, p = self.t, d.person
        head: list[ft.Control] = [
            ft.Row([
                ft.CircleAvatar(content=ft.Text(p.alias[:1].upper(), size=22), radius=28),
                ft.Column([
                    tid(ft.Text(p.alias, size=24, weight=ft.FontWeight.BOLD), "person-alias"),
                    ft.Text(" · ".join(x for x in [t.vocab("status", p.status), t.vocab("category", p.category)] if x),
                            size=14, color=ft.Colors.ON_SURFACE_VARIANT),
                ], spacing=2, expand=True),
            ]),
            muted(t("person.last_contact", when=t.datetime(d.last_contact) if d.last_contact else t("time.never"))),
        ]
        if p.safety_note:
            head.append(banner(t("person.safety", note=p.safety_note), tone="error", identifier="person-safety",
                               icon=ft.Icons.HEALTH_AND_SAFETY))
        for c in d.conflicts:
            head.append(self._conflict(c))
        head.append(ft.Row([
            primary_button(t("person.new_contact"), lambda e: self.ctx.navigate(f"/contact/new?person={p.id}"),
                           "person-new-contact", icon=ft.Icons.ADD_COMMENT),
            secondary_button(t("common.edit"), lambda e: self.ctx.navigate(f"/people/{p.id}/edit"), "person-edit",
                             icon=ft.Icons.EDIT),
        ], wrap=True, spacing=8))
        if self.ctx.coordinator:  # data protection: the coordinator's
            head.append(ft.Row([
                text_button(t("access.action"), self._access, "person-access", icon=ft.Icons.ASSIGNMENT_IND),
                text_button(t("audit.title"), lambda e: self.ctx.navigate(f"/desk/privacy?person={p.id}"),
                            "person-audit", icon=ft.Icons.HISTORY),
            ], wrap=True, spacing=4))

        profile: list[ft.Control] = [section_title(t("person.profile"))]
        facts = [
            ("person.full_name", p.full_name), ("person.cpr", p.cpr), ("person.birth_year", p.birth_year),
            ("person.gender", t.vocab("gender", p.gender) if p.gender else None),
            ("person.nationality", p.nationality), ("person.languages", ", ".join(p.languages) or None),
            ("person.description", p.description), ("person.ethos", t.vocab("ethos", p.ethos) if p.ethos else None),
            ("person.consent", t.vocab("consent", p.consent) + (f" ({t.date(p.consent_date)})" if p.consent_date else "")),
            ("person.consent_scope", p.consent_scope),
            ("person.status_date", t.date(p.status_date) if p.status_date else None),
            ("person.icm_worker", p.icm_worker),
            ("person.needs", ", ".join(t.vocab("need", n) for n in p.needs) or None),
            ("person.usual_place", d.usual_place_name),
        ]
        profile += [labelled(t(k), str(v)) for k, v in facts if v not in (None, "")]

        fus: list[ft.Control] = [section_title(t("person.follow_ups"), count=len(d.follow_ups))]
        fus += [follow_up_tile(f, t, self._done(f), None) for f in d.follow_ups] or [empty_state(t("person.no_follow_ups"))]

        timeline: list[ft.Control] = [section_title(t("person.timeline"), count=len(d.contacts))]
        timeline += [contact_tile(c, t, None, show_person=False, show_date=True) for c in d.contacts] or [
            empty_state(t("person.no_contacts"))]
        # erasing (it asks first) sits at the end of the page, far from "Ny kontakt", the most common tap
        end: list[ft.Control] = [ft.Divider(), ft.Row([text_button(t("erase.action"), self._erase, "person-erase",
                                                                   icon=ft.Icons.DELETE_FOREVER)])] \
            if self.ctx.coordinator else []
        self.column.controls = [*head, *profile, *fus, tid(ft.Column(timeline, spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH), "person-timeline", container=True), *end]

    def _conflict(self, c: ConflictRow) -> ft.Control:
        t = self.t
        field = t(f"person.{c.field}") if t.has(f"person.{c.field}") else c.field
        a, b = self._value(c.field, c.value_a), self._value(c.field, c.value_b)
        text = t("conflict.text", field=field, a=a, at_a=t.datetime(c.at_a), b=b, at_b=t.datetime(c.at_b))
        return banner(text, tone="warn", identifier=f"conflict-{c.field}", icon=ft.Icons.CALL_SPLIT, actions=[
            secondary_button(t("conflict.keep", value=a), self._keep(c.field, c.value_a), f"conflict-{c.field}-a"),
            secondary_button(t("conflict.keep", value=b), self._keep(c.field, c.value_b), f"conflict-{c.field}-b"),
        ])

    async def _access(self, e: Any = None) -> None:
        await show_access(self.ctx, self.person_id)

    async def _erase(self, e: Any = None) -> None:
        async def after() -> None:
            self.ctx.navigate("/people")

        await ask_erase(self.ctx, self.person_id, after)

    def _keep(self, field: str, value: Any) -> Any:
        async def keep(e: Any) -> None:
            _ok, problem = await self.ctx.attempt(self.ctx.services.resolve_conflict(self.person_id, field, value))
            if problem:
                self.ctx.toast(self.ctx.words(problem), error=True)
                return
            self.ctx.toast(self.t("conflict.resolved"))
            await self.load()
            self.screen.update()

        return keep

    def _done(self, row: FollowUpRow) -> Any:
        async def done(e: Any) -> None:
            _ok, problem = await self.ctx.attempt(self.ctx.services.follow_up_done(row.id, bool(e.control.value)))
            if problem:
                self.ctx.toast(self.ctx.words(problem), error=True)
                return
            self.ctx.toast(self.t("followup.done_toast"))
            await self.load()
            self.screen.update()

        return done


class PersonScreen(Screen):
    """The person page alone (phone)."""

    title_key = "person.title"
    nav = "people"
    back = "/people"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        self.panel = PersonPanel(self, params["id"])

    def build(self) -> ft.Control:
        return self.panel.build()

    async def load(self) -> None:
        await self.panel.load()


# ======================================================================================== list
class PeopleScreen(Screen):
    title_key = "people.title"
    nav = "people"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        self.selected = params.get("id")
        if self.selected and not ctx.wide:
            self.back = "/people"
        mem = ctx.memory.setdefault("people", {"text": "", "status": "", "category": "", "not_seen": "", "limit": 200})
        self.mem = mem
        self.search_box, self.search = text_field(t("people.search"), "people-search", value=mem["text"],
                                                  on_change=self._on_search, prefix_icon=ft.Icons.SEARCH)
        self.status_box, self.status = dropdown(
            t("people.filter_status"), "people-status",
            [("", t("common.all"))] + [(s.value, t.vocab("status", s)) for s in Status],
            value=mem["status"], on_select=self._on_filter, expand=True)
        self.category_box, self.category = dropdown(
            t("people.filter_category"), "people-category",
            [("", t("common.all"))] + [(c.value, t.vocab("category", c)) for c in HomelessCategory],
            value=mem["category"], on_select=self._on_filter, expand=True)
        self.not_seen_box, self.not_seen = dropdown(
            t("people.filter_not_seen"), "people-not-seen",
            [("", t("common.any"))] + [(str(n), t("people.not_seen_days", n=n)) for n in NOT_SEEN_CHOICES],
            value=mem["not_seen"], on_select=self._on_filter, expand=True)
        self.count_text = ft.Text("", size=14, color=ft.Colors.ON_SURFACE_VARIANT)
        self.count = tid(self.count_text, "people-count")
        self.list = ft.Column(spacing=0, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.more = ft.Container()
        self.panel = PersonPanel(self, self.selected) if self.selected and ctx.wide else None
        self._search_handle: asyncio.TimerHandle | None = None

    def title(self) -> str:
        return self.t("people.title")

    def fab(self) -> ft.Control:
        return tid(ft.FloatingActionButton(icon=ft.Icons.PERSON_ADD, on_click=lambda e: self.ctx.navigate("/people/new"),
                                           tooltip=self.t("people.new")), "people-new", self.t("people.new"), button=True)

    def build(self) -> ft.Control:
        filters = ft.ResponsiveRow([
            ft.Container(self.status_box, col={"xs": 12, "sm": 4}),
            ft.Container(self.category_box, col={"xs": 12, "sm": 4}),
            ft.Container(self.not_seen_box, col={"xs": 12, "sm": 4}),
        ], spacing=8, run_spacing=8)
        list_controls = [self.search_box, filters, self.count, tid(self.list, "people-list", container=True), self.more,
                         ft.Container(height=72)]
        if not self.ctx.wide:
            return page_body(list_controls, wide=False)
        left = ft.Container(
            ft.Column(list_controls, spacing=8, scroll=ft.ScrollMode.AUTO, expand=True,
                      horizontal_alignment=ft.CrossAxisAlignment.STRETCH),
            width=420, padding=16,
        )
        right = self.panel.build() if self.panel else ft.Container(
            empty_state(self.t("people.choose"), "people-choose"), padding=24, expand=True)
        return ft.Row([left, ft.VerticalDivider(width=1), ft.Container(right, expand=True)], expand=True,
                      spacing=0, vertical_alignment=ft.CrossAxisAlignment.STRETCH)

    async def load(self) -> None:
        await self._load_list()
        if self.panel is not None:
            await self.panel.load()

    async def on_data_changed(self) -> None:
        await self.load()

    async def _load_list(self) -> None:
        t, mem = self.t, self.mem
        not_seen = int(mem["not_seen"]) if mem["not_seen"] else None
        result, problem = await self.ctx.attempt(self.services.persons(
            text=mem["text"], status=mem["status"] or None, category=mem["category"] or None,
            not_seen_days=not_seen, limit=mem["limit"]))
        if problem or result is None:
            return
        rows, total = result
        self.count_text.value = t("people.count", n=total)
        # a first sync still bringing the older history: a person not found may yet come
        none = t("people.none_yet") if self.services.sync.view.history_pending else t("people.none")
        self.list.controls = [self._tile(r) for r in rows] or [empty_state(none, "people-empty")]
        if total > len(rows):
            self.more.content = secondary_button(t("people.show_more", n=total - len(rows)), self._show_more,
                                                 "people-more")
        else:
            self.more.content = None

    def _tile(self, row: PersonRow) -> ft.Control:
        return person_tile(row, self.t, lambda e: self.ctx.navigate(f"/people/{row.id}"),
                           selected=row.id == self.selected)

    async def _show_more(self, e: Any = None) -> None:
        self.mem["limit"] += 200
        await self._load_list()
        self.update()

    def _on_search(self, e: Any) -> None:
        self.ctx.touch()
        self.mem["text"] = self.search.value or ""
        if self._search_handle is not None:
            self._search_handle.cancel()
        self._search_handle = self.later(SEARCH_PAUSE, self._refresh_list)

    async def _refresh_list(self) -> None:
        await self._load_list()
        self.update()

    async def _on_filter(self, e: Any) -> None:
        self.mem["status"] = self.status.value or ""
        self.mem["category"] = self.category.value or ""
        self.mem["not_seen"] = self.not_seen.value or ""
        await self._refresh_list()


# ======================================================================================== form
class PersonEditScreen(Screen):
    """A new person, or an edit of one. Bad input is shown at its field and nothing is saved."""

    nav = "people"

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        self.person_id = params.get("id")
        self.back = f"/people/{self.person_id}" if self.person_id else "/people"
        self.draft = PersonDraft()
        self.places: list[PlaceRow] = []
        self.form = ft.Column(spacing=12, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.fields: dict[str, ft.TextField] = {}
        self.message = ErrorLine("pf-message")
        self._saving = False
        self._initial: PersonDraft | None = None  # the form as loaded: what leaving without saving compares with
        self._done = False

    def title(self) -> str:
        return self.t("person.edit_title" if self.person_id else "person.new_title")

    def unsaved(self) -> bool:
        start = self._initial
        if self._done or start is None:
            return False
        typed = any((f.value or "") != str(getattr(start, n)) for n, f in self.fields.items())
        chosen = any(getattr(self.draft, n) != getattr(start, n) for n in vars(start) if n not in self.fields)
        return typed or chosen

    def discard(self) -> None:
        self._done = True

    def build(self) -> ft.Control:
        self.form.controls = [ft.ProgressRing(width=32, height=32)]
        return page_body([self.form], wide=self.ctx.wide, max_width=640)

    async def load(self) -> None:
        if self.person_id:
            detail, problem = await self.ctx.attempt(self.services.person_detail(self.person_id))
            if problem or detail is None:
                self.form.controls = [empty_state(self.t("person.not_found"))]
                return
            self.draft = PersonDraft.from_person(detail.person)
        places, _problem = await self.ctx.attempt(self.services.place_names())
        self.places = places or []
        self._initial = copy.deepcopy(self.draft)
        self._draw()

    def _text(self, name: str, label_key: str, *, multiline: bool = False, keyboard: Any = None,
              hint: str | None = None) -> ft.Control:
        box, field = text_field(self.t(label_key), f"pf-{name.replace('_', '-')}", value=str(getattr(self.draft, name)),
                                multiline=multiline, keyboard=keyboard, hint=hint)
        self.fields[name] = field
        return box

    def _select(self, name: str, label_key: str, vocab: str, enum: Any, *, blank: bool = True) -> ft.Control:
        t = self.t
        options = ([("", t("common.none"))] if blank else []) + [(v.value, t.vocab(vocab, v)) for v in enum]

        def chosen(e: Any) -> None:
            setattr(self.draft, name, e.control.value or None)

        box, _dd = dropdown(t(label_key), f"pf-{name.replace('_', '-')}", options,
                            value=getattr(self.draft, name) or "", on_select=chosen, expand=True)
        return box

    def _draw(self) -> None:
        t = self.t
        d = self.draft
        needs = ft.Row(wrap=True, spacing=8, run_spacing=8)

        def draw_needs() -> None:
            needs.controls = [choice_chip(t.vocab("need", n), n.value in d.needs, toggle(n.value), f"pf-need-{n.value}")
                              for n in Need]

        def toggle(value: str) -> Any:
            def flip(e: Any) -> None:
                d.needs.symmetric_difference_update({value})
                draw_needs()

            return flip

        draw_needs()

        def usual(e: Any) -> None:
            d.usual_place = e.control.value or None

        usual_box, _dd = dropdown(t("person.usual_place"), "pf-usual-place",
                                  [("", t("common.none"))] + [(p.id, p.name) for p in self.places],
                                  value=d.usual_place or "", on_select=usual, expand=True)
        self.form.controls = [
            self._text("alias", "person.alias", hint=t("person.alias_hint")),
            self._text("description", "person.description", multiline=True),
            self._select("status", "person.status", "status", Status, blank=False),
            self._select("category", "person.category", "category", HomelessCategory),
            self._text("birth_year", "person.birth_year", keyboard=ft.KeyboardType.NUMBER),
            self._select("gender", "person.gender", "gender", Gender),
            self._text("full_name", "person.full_name"),
            self._text("cpr", "person.cpr", hint="DDMMYY-XXXX"),
            self._text("nationality", "person.nationality"),
            self._text("languages", "person.languages", hint=t("person.languages_hint")),
            self._select("ethos", "person.ethos", "ethos", Ethos),
            self._select("consent", "person.consent", "consent", Consent, blank=False),
            self._text("consent_date", "person.consent_date", hint=t("common.date_hint")),
            self._text("consent_scope", "person.consent_scope"),
            self._text("icm_worker", "person.icm_worker"),
            section_title(t("person.needs")), needs,
            self._text("safety_note", "person.safety_note", multiline=True),
            usual_box,
            self.message.control,
            ft.Row([
                primary_button(t("common.save"), self._save, "pf-save", icon=ft.Icons.CHECK),
                secondary_button(t("common.cancel"), self._cancel, "pf-cancel"),
            ], spacing=8),
        ]

    def _cancel(self, e: Any = None) -> None:
        self.discard()  # "Annullér" says it: nothing to ask
        self.ctx.navigate(self.back or "/people")

    async def _save(self, e: Any = None) -> None:
        if self._saving:
            return
        t, d = self.t, self.draft
        for name, field in self.fields.items():
            setattr(d, name, field.value or "")
            field.error = None
        errors = d.check(date.today())
        for name, key in errors.items():
            if name in self.fields:
                self.fields[name].error = t(key)
        self.message.show(t("errors.form_has_problems") if errors else "")
        if errors:
            self.update()
            return
        self._saving = True
        if self.person_id:
            _none, problem = await self.ctx.attempt(self.services.edit_person(self.person_id, d))
            target = f"/people/{self.person_id}"
        else:
            new_id, problem = await self.ctx.attempt(self.services.add_person(d))
            target = f"/people/{new_id}" if new_id else "/people"
        self._saving = False
        if problem:
            if problem.field and problem.field in self.fields:
                self.fields[problem.field].error = t("errors.invalid")
            self.message.show(self.ctx.words(problem))
            self.update()
            return
        self.ctx.toast(t("person.saved"))
        self._done = True
        self.ctx.navigate(target)
