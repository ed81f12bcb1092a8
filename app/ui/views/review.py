"""The desk's review: conflicts (a field two devices changed without seeing each other: both values
side by side with who and when; keep one or write a new value, synced as a normal change) and
duplicates (persons probably registered twice, offline, on two devices: the reasons in words, a
merge that moves the contacts and follow-ups to the kept person and is synced and audited, or
"not the same person").
"""

from __future__ import annotations

from typing import Any

import flet as ft

from models.domain.vocab import VOCABULARIES

from ...state import DeskConflict, DuplicateRow, PersonRow
from ..components.ui import (
    banner,
    dropdown,
    empty_state,
    muted,
    page_body,
    secondary_button,
    section_title,
    text_button,
    text_field,
    tid,
)
from .base import Ctx
from .desk import DeskScreen, desk_tabs

__all__ = ["ReviewScreen"]

_VOCAB_FIELDS = {"status": "status", "consent": "consent", "category": "category", "ethos": "ethos",
                 "gender": "gender", "kind": "kind", "living": "living"}


class ReviewScreen(DeskScreen):

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        self.conflicts = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.duplicates = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
        self.conflict_title = ft.Container()
        self.duplicate_title = ft.Container()
        self._pairs: dict[str, DuplicateRow] = {}

    def build(self) -> ft.Control:
        self.conflicts.controls = [ft.ProgressRing(width=32, height=32)]
        return page_body([
            desk_tabs(self.ctx, "review"),
            self.conflict_title,
            muted(self.t("review.conflicts_intro")),
            tid(self.conflicts, "review-conflicts"),
            self.duplicate_title,
            muted(self.t("review.duplicates_intro")),
            tid(self.duplicates, "review-duplicates"),
            ft.Container(height=24),
        ], wide=self.ctx.wide, max_width=1000)

    async def load(self) -> None:
        t = self.t
        conflicts, problem = await self.ctx.attempt(self.services.desk.conflicts())
        duplicates, problem2 = await self.ctx.attempt(self.services.desk.duplicates())
        if problem or problem2:
            self.conflicts.controls = [banner(self.ctx.words(problem or problem2), tone="error")]  # type: ignore[arg-type]
            return
        conflicts, duplicates = conflicts or [], duplicates or []
        self.conflict_title.content = section_title(t("review.conflicts"), count=len(conflicts))
        self.duplicate_title.content = section_title(t("review.duplicates"), count=len(duplicates))
        self.conflicts.controls = [self._conflict(c, i) for i, c in enumerate(conflicts)] or [
            empty_state(t("review.no_conflicts"), "review-no-conflicts")]
        self._pairs = {}
        self.duplicates.controls = [self._duplicate(d, i) for i, d in enumerate(duplicates)] or [
            empty_state(t("review.no_duplicates"), "review-no-duplicates")]

    # ------------------------------------------------------------------ conflicts
    def _value(self, field: str, value: Any) -> str:
        if value is None or value == "" or value == []:
            return self.t("common.none")
        if field in _VOCAB_FIELDS:
            return self.t.vocab(_VOCAB_FIELDS[field], value)
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    def _field_name(self, field: str) -> str:
        t = self.t
        for key in (f"person.{field}", f"export.{field}"):
            if t.has(key):
                return t(key)
        return field

    def _conflict(self, c: DeskConflict, n: int) -> ft.Control:
        t, i = self.t, c.item
        rtype = getattr(i.record_type, "value", i.record_type)
        ident = f"review-conflict-{n}"
        field = self._field_name(i.field)
        a, b = self._value(i.field, i.value_a), self._value(i.field, i.value_b)

        def side(letter: str, value: str, device: str, at: Any, shown: bool) -> ft.Control:
            who = t("review.by", device=device, when=t.datetime(at))
            body = [ft.Text(value, size=18, weight=ft.FontWeight.BOLD), muted(who, size=13)]
            if shown:
                body.append(muted(t("review.shown_now"), size=12))
            body.append(secondary_button(t("conflict.keep", value=value), self._keep(c, letter), f"{ident}-keep-{letter}"))
            return ft.Container(ft.Column(body, spacing=4), padding=12, border_radius=12,
                                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW, col={"xs": 12, "sm": 6})

        vocab = _VOCAB_FIELDS.get(i.field)
        new_value: ft.Control
        field_input: Any
        if vocab:  # a closed list: choose, do not type
            new_value, field_input = dropdown(t("review.new_value"), f"{ident}-value",
                                              [(v.value, t.vocab(vocab, v)) for v in VOCABULARIES[vocab]])
        else:
            new_value, field_input = text_field(t("review.new_value"), f"{ident}-value")
        head = t("review.conflict_head", what=t(f"record.{rtype}"), label=i.label or i.record_id[:8], field=field)
        card = ft.Container(ft.Column([
            ft.Row([ft.Icon(ft.Icons.CALL_SPLIT), ft.Text(head, size=15, weight=ft.FontWeight.W_600, expand=True)]),
            ft.ResponsiveRow([
                side("a", a, i.device_a_name or i.device_a[:8], i.at_a, False),
                side("b", b, i.device_b_name or i.device_b[:8], i.at_b, True),
            ], spacing=8, run_spacing=8),
            ft.Row([ft.Container(new_value, expand=True),
                    secondary_button(t("review.write_value"), self._write(c, field_input), f"{ident}-write")],
                   vertical_alignment=ft.CrossAxisAlignment.START),
        ], spacing=8), padding=12, border_radius=12, bgcolor=ft.Colors.TERTIARY_CONTAINER)
        return tid(card, ident, head)

    def _keep(self, c: DeskConflict, letter: str) -> Any:
        async def keep(e: Any = None) -> None:
            await self._resolve(c, keep=letter)

        return keep

    def _write(self, c: DeskConflict, field_input: Any) -> Any:
        async def write(e: Any = None) -> None:
            text = (field_input.value or "").strip()
            if not text:
                field_input.error = self.t("review.value_missing")
                self.update()
                return
            field_input.error = None
            await self._resolve(c, value=_typed(c.item.value_b, text))

        return write

    async def _resolve(self, c: DeskConflict, *, keep: str | None = None, value: Any = None) -> None:
        _ok, problem = await self.ctx.attempt(self.services.desk.resolve(c, keep=keep, value=value))
        if problem:
            self.ctx.toast(self.ctx.words(problem), error=True)
            return
        self.ctx.toast(self.t("conflict.resolved"))
        await self.load()
        self.update()

    # ------------------------------------------------------------------ duplicates
    def _person(self, p: PersonRow, letter: str, ident: str) -> ft.Control:
        t = self.t
        facts = [x for x in [t.vocab("status", p.status), t.vocab("category", p.category) if p.category else None,
                             t("person.last_contact", when=t.date(p.last_contact) if p.last_contact else t("time.never"))]
                 if x]
        body: list[ft.Control] = [
            ft.Text(p.alias, size=18, weight=ft.FontWeight.BOLD),
            muted(" · ".join(facts), size=13),
        ]
        if p.description:
            body.append(muted(p.description, size=13))
        body.append(ft.Row([
            secondary_button(t("review.keep_this"), self._merge_into(p, letter), f"{ident}-keep-{letter}",
                             icon=ft.Icons.MERGE),
            text_button(t("review.open"), lambda e: self.ctx.navigate(f"/people/{p.id}"), f"{ident}-open-{letter}"),
        ], wrap=True, spacing=4))
        return ft.Container(ft.Column(body, spacing=4), padding=12, border_radius=12,
                            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW, col={"xs": 12, "sm": 6})

    def _duplicate(self, d: DuplicateRow, n: int) -> ft.Control:
        t = self.t
        ident = f"review-duplicate-{n}"
        self._pairs[d.a.id] = self._pairs[d.b.id] = d
        reasons = ", ".join(t(f"duplicate.{r}") for r in d.reasons)
        head = t("review.duplicate_head", a=d.a.alias, b=d.b.alias, score=round(d.score * 100))
        card = ft.Container(ft.Column([
            ft.Row([ft.Icon(ft.Icons.PEOPLE_OUTLINE), ft.Text(head, size=15, weight=ft.FontWeight.W_600, expand=True)]),
            muted(t("review.reasons", reasons=reasons), size=13),
            ft.ResponsiveRow([self._person(d.a, "a", ident), self._person(d.b, "b", ident)], spacing=8, run_spacing=8),
            text_button(t("review.not_same"), self._dismiss(d), f"{ident}-dismiss", icon=ft.Icons.CLOSE),
        ], spacing=8), padding=12, border_radius=12, bgcolor=ft.Colors.SECONDARY_CONTAINER)
        return tid(card, ident, head)

    def _merge_into(self, keep: PersonRow, letter: str) -> Any:
        async def ask(e: Any = None) -> None:
            t = self.t
            d = self._pairs[keep.id]
            drop = d.b if letter == "a" else d.a

            async def confirmed(ev: Any = None) -> None:
                self.ctx.page.pop_dialog()
                res, problem = await self.ctx.attempt(self.services.desk.merge(keep_id=keep.id, drop_id=drop.id))
                if problem or res is None:
                    self.ctx.toast(self.ctx.words(problem) if problem else "", error=True)
                    return
                self.ctx.toast(t("review.merged", alias=keep.alias, contacts=res.contacts, follow_ups=res.follow_ups))
                await self.load()
                self.update()

            self.ctx.confirm(t("review.merge_title"),
                             ft.Text(t("review.merge_text", keep=keep.alias, drop=drop.alias), size=15, width=420),
                             confirm=t("review.merge"), on_confirm=confirmed, identifier="merge", icon=ft.Icons.MERGE)

        return ask

    def _dismiss(self, d: DuplicateRow) -> Any:
        async def dismiss(e: Any = None) -> None:
            _ok, problem = await self.ctx.attempt(self.services.desk.not_duplicates(d.a.id, d.b.id))
            if problem:
                self.ctx.toast(self.ctx.words(problem), error=True)
                return
            await self.load()
            self.update()

        return dismiss


def _typed(example: Any, text: str) -> Any:
    """A new value typed for a field: a number where the field holds numbers, else the text.
    The record's own validation refuses what does not fit (shown as an error, nothing saved)."""
    if isinstance(example, bool):
        return text.strip().casefold() in ("1", "ja", "yes", "true")
    if isinstance(example, int):
        try:
            return int(text)
        except ValueError:
            return text
    if isinstance(example, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text

