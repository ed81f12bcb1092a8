"""List rows shared by the screens: a contact, a person, a place, a follow-up, a security notice.
Each takes a row of `app.state`, the translator and what to do on a tap; each is at least 48 px
high and carries an identifier for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import flet as ft

from ...i18n import Translator
from ...state import ContactRow, FollowUpRow, NoticeRow, PersonRow, PlaceRow
from .ui import tid

__all__ = ["contact_tile", "person_tile", "place_tile", "follow_up_tile", "notice_tile", "ago"]

_NOTICE_ICONS = {
    "key_refused": ft.Icons.KEY_OFF, "purge_refused": ft.Icons.GPP_BAD_OUTLINED,
    "erased_edit": ft.Icons.DELETE_SWEEP_OUTLINED, "audit_refused": ft.Icons.POLICY_OUTLINED,
    "future_op": ft.Icons.UPDATE,
}
_KIND_ICONS = {
    "street": ft.Icons.DIRECTIONS_WALK, "drop_in": ft.Icons.HOUSE_OUTLINED, "phone": ft.Icons.PHONE,
    "home_visit": ft.Icons.DOOR_FRONT_DOOR_OUTLINED, "not_found": ft.Icons.SEARCH_OFF,
}


def ago(t: Translator, when: datetime | None, now: datetime | None = None) -> str:
    """`today 21:14`, `yesterday`, `12 days ago`, or `never`."""
    if when is None:
        return t("time.never")
    now = now or datetime.now()
    days = (now.date() - when.date()).days
    if days <= 0:
        return t("time.today_at", time=when.strftime("%H:%M"))
    if days == 1:
        return t("time.yesterday")
    if days < 60:
        return t("time.days_ago", n=days)
    return t.date(when)


def contact_tile(row: ContactRow, t: Translator, on_click: Callable[..., Any] | None, *,
                 show_person: bool = True, show_date: bool = False, show_place: bool = True) -> ft.Control:
    who = row.person_alias if row.person_alias else t("contact.anonymous")
    when = t.datetime(row.at) if show_date else t.time(row.at)
    title_bits = [when, who] if show_person else [when, t.vocab("kind", row.kind)]
    details = [row.place_name or t("contact.no_place")] if show_place else []
    if show_person:
        details.append(t.vocab("kind", row.kind))
    if row.services:
        details.append(", ".join(t.vocab("service", s) for s in row.services))
    subtitle: list[ft.Control] = [ft.Text(" · ".join(details), size=14)]
    if row.note:
        subtitle.append(ft.Text(row.note, size=14, italic=True, max_lines=3, overflow=ft.TextOverflow.ELLIPSIS))
    if row.follow_up:
        subtitle.append(ft.Text(t("contact.follow_up_on", date=t.date(row.follow_up)), size=13,
                                color=ft.Colors.PRIMARY))
    tile = ft.ListTile(
        leading=ft.Icon(_KIND_ICONS.get(row.kind, ft.Icons.CHAT_BUBBLE_OUTLINE)),
        title=ft.Text(" · ".join(title_bits), weight=ft.FontWeight.W_600),
        subtitle=ft.Column(subtitle, spacing=2), on_click=on_click, min_height=56,
    )
    return tid(tile, f"contact-{row.id}")


def person_tile(row: PersonRow, t: Translator, on_click: Callable[..., Any] | None, *,
                selected: bool = False, identifier_prefix: str = "person") -> ft.Control:
    bits = [t.vocab("status", row.status)]
    if row.category:
        bits.append(t.vocab("category", row.category))
    seen = t("person.last_contact", when=ago(t, row.last_contact))
    tile = ft.ListTile(
        leading=ft.CircleAvatar(content=ft.Text(row.alias[:1].upper()), radius=20),
        title=ft.Text(row.alias, weight=ft.FontWeight.W_600, size=16),
        subtitle=ft.Text(f"{' · '.join(bits)}\n{seen}", size=13), on_click=on_click,
        selected=selected, min_height=56, is_three_line=False,
    )
    return tid(tile, f"{identifier_prefix}-{row.id}")


def place_tile(row: PlaceRow, t: Translator, on_click: Callable[..., Any] | None, *,
               selected: bool = False) -> ft.Control:
    bits = [row.zone] if row.zone else []
    if row.last_at:
        who = row.last_alias or t("contact.anonymous")
        bits.append(t("place.last_met", who=who, when=ago(t, row.last_at)))
    else:
        bits.append(t("place.never_used"))
    tile = ft.ListTile(
        leading=ft.Icon(ft.Icons.PLACE_OUTLINED), title=ft.Text(row.name, weight=ft.FontWeight.W_600, size=16),
        subtitle=ft.Text(" · ".join(bits), size=13), on_click=on_click, selected=selected, min_height=56,
    )
    return tid(tile, f"place-{row.id}")


def follow_up_tile(row: FollowUpRow, t: Translator, on_done: Callable[..., Any] | None,
                   on_open: Callable[..., Any] | None) -> ft.Control:
    who = row.person_alias or t("contact.anonymous")
    due = t("followup.overdue", date=t.date(row.due)) if row.overdue else t("followup.due", date=t.date(row.due))
    done = ft.Checkbox(value=False, on_change=on_done, semantics_label=t("followup.mark_done", who=who))
    tile = ft.ListTile(
        leading=ft.Container(done, width=48, height=48, alignment=ft.Alignment.CENTER),
        title=ft.Text(who, weight=ft.FontWeight.W_600),
        subtitle=ft.Text(due + (f" · {row.note}" if row.note else ""), size=13,
                         color=ft.Colors.ERROR if row.overdue else None),
        on_click=on_open, min_height=56,
    )
    return tid(tile, f"followup-{row.id}")


def notice_tile(row: NoticeRow, t: Translator, index: int) -> ft.Control:
    """A security notice: what happened in words (the kind), when, and the ids (never content)."""
    what = t(row.kind_key, kind=row.kind)
    ids = [t.datetime(row.at)]
    if row.record_id:
        ids.append(t("notice.record", id=row.record_id))
    if row.short_device:
        ids.append(t("notice.device", id=row.short_device))
    tile = ft.ListTile(
        leading=ft.Icon(_NOTICE_ICONS.get(row.kind, ft.Icons.SHIELD_OUTLINED)),
        title=ft.Text(what, weight=ft.FontWeight.W_600, size=15),
        subtitle=ft.Text(" · ".join(ids), size=13), min_height=56,
    )
    return tid(tile, f"notice-{index}", f"{what}: {' · '.join(ids)}")
