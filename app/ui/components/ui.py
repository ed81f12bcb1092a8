"""Small building blocks every screen uses: a stable test identifier with a semantics label,
buttons with touch targets of at least 48 px, section titles, empty states, choice chips and
text fields that show their error at the field. Pure controls: no services, no translations
(callers pass the words in), no state beyond the control itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flet as ft

__all__ = [
    "MIN_TOUCH",
    "tid",
    "big_button",
    "primary_button",
    "secondary_button",
    "text_button",
    "icon_button",
    "section_title",
    "muted",
    "empty_state",
    "choice_chip",
    "text_field",
    "dropdown",
    "labelled",
    "page_body",
    "banner",
    "confirm_dialog",
    "ErrorLine",
]

MIN_TOUCH = 48
Handler = Callable[..., Any] | None


def tid(control: ft.Control, identifier: str, label: str | None = None, *, button: bool | None = None,
        container: bool = False) -> ft.Semantics:
    """Give a control a stable identifier for tests (the web's `flt-semantics-identifier`) and,
    when it has no words of its own, a label for screen readers. `container=True` for a list of
    rows that have identifiers of their own: without it Flutter may merge the wrapper's node away
    once the rows are there (the devices list lost its identifier so, now and then, after loading).
    Such a list's content sits in a node of its own under the identified one, so that the identified
    node stays a plain group whatever it holds: its content merged into it would change its role
    (a loading ring is a "loading spinner", rows make a group), and Flutter's web engine builds a new
    element for a new role without the identifier (the devices list lost it so whenever the ring
    was drawn before the rows came)."""
    # an `expand` must sit on the Row's or Column's direct child: the wrapper takes it over (only
    # a true one: an explicit `expand=False` breaks a wrapping Row in Flet 1.0)
    content = ft.Semantics(content=control, container=True) if container else control
    return ft.Semantics(content=content, identifier=identifier, label=label, button=button, container=container,
                        expand=getattr(control, "expand", None) or None)


def _style(height: int) -> ft.ButtonStyle:
    return ft.ButtonStyle(padding=ft.Padding.symmetric(horizontal=20, vertical=12),
                          shape=ft.RoundedRectangleBorder(radius=12), text_style=ft.TextStyle(size=16))


def big_button(text: str, on_click: Handler, identifier: str, *, icon: Any = None) -> ft.Control:
    """The one action a screen is for (Today's "new contact"): full width, 72 px high."""
    button = ft.FilledButton(
        content=ft.Row([ft.Icon(icon, size=32) if icon else ft.Container(),
                        ft.Text(text, size=22, weight=ft.FontWeight.BOLD)],
                       alignment=ft.MainAxisAlignment.CENTER, spacing=12),
        on_click=on_click, height=72, expand=True,
        style=ft.ButtonStyle(shape=ft.RoundedRectangleBorder(radius=16)),
    )
    return tid(ft.Row([button]), identifier, button=True)


def primary_button(text: str, on_click: Handler, identifier: str, *, icon: Any = None, expand: bool = False,
                   disabled: bool = False) -> ft.Semantics:
    button = ft.FilledButton(content=text, icon=icon, on_click=on_click, height=52, expand=expand or None,
                             disabled=disabled, style=_style(52))
    return tid(button, identifier)


def secondary_button(text: str, on_click: Handler, identifier: str, *, icon: Any = None,
                     expand: bool = False) -> ft.Semantics:
    button = ft.OutlinedButton(content=text, icon=icon, on_click=on_click, height=MIN_TOUCH, expand=expand or None,
                               style=_style(MIN_TOUCH))
    return tid(button, identifier)


def text_button(text: str, on_click: Handler, identifier: str, *, icon: Any = None) -> ft.Semantics:
    return tid(ft.TextButton(content=text, icon=icon, on_click=on_click, height=MIN_TOUCH), identifier)


def icon_button(icon: Any, label: str, on_click: Handler, identifier: str, *, color: Any = None) -> ft.Semantics:
    """An icon alone needs words for a screen reader: the label is both tooltip and semantics."""
    return tid(ft.IconButton(icon=icon, tooltip=label, on_click=on_click, icon_color=color,
                             width=MIN_TOUCH, height=MIN_TOUCH), identifier, label)


def section_title(text: str, *, count: int | None = None) -> ft.Control:
    words = text if count is None else f"{text} ({count})"
    return ft.Container(ft.Text(words, theme_style=ft.TextThemeStyle.TITLE_MEDIUM, weight=ft.FontWeight.BOLD),
                        padding=ft.Padding.only(top=16, bottom=4))


def muted(text: str, *, size: int = 14, identifier: str | None = None, selectable: bool = False) -> ft.Control:
    control = ft.Text(text, size=size, color=ft.Colors.ON_SURFACE_VARIANT, selectable=selectable)
    return tid(control, identifier) if identifier else control


def empty_state(text: str, identifier: str | None = None) -> ft.Control:
    box = ft.Container(ft.Text(text, color=ft.Colors.ON_SURFACE_VARIANT, italic=True),
                       padding=ft.Padding.symmetric(vertical=12, horizontal=4))
    return tid(box, identifier) if identifier else box


def choice_chip(label: str, selected: bool, on_select: Handler, identifier: str, *,
                icon: Any = None) -> ft.Semantics:
    # chosen is said by more than a pale fill (WCAG 1.4.11): a check mark where the chip has no icon
    # of its own, and a border in the primary colour (well over 3:1 against the page)
    chip = ft.Chip(label=ft.Text(label, size=15), selected=selected, on_select=on_select,
                   leading=ft.Icon(ft.Icons.CHECK if selected else icon, size=18) if icon else None,
                   show_checkmark=True, padding=ft.Padding.symmetric(horizontal=6, vertical=8),
                   border_side=ft.BorderSide(2, ft.Colors.PRIMARY) if selected else None)
    return tid(chip, identifier)


def text_field(label: str, identifier: str, *, value: str = "", hint: str | None = None, password: bool = False,
               multiline: bool = False, on_change: Handler = None, on_submit: Handler = None,
               autofocus: bool = False, keyboard: ft.KeyboardType | None = None, width: float | None = None,
               expand: bool | None = None, max_length: int | None = None, prefix_icon: Any = None,
               suffix: ft.Control | None = None) -> tuple[ft.Semantics, ft.TextField]:
    """A text field and its semantics wrapper: set `field.error` to show a problem at the field."""
    field = ft.TextField(
        label=label, value=value, hint_text=hint, password=password, can_reveal_password=password,
        multiline=multiline, min_lines=3 if multiline else None, max_lines=8 if multiline else 1,
        on_change=on_change, on_submit=on_submit, autofocus=autofocus,
        keyboard_type=keyboard or (ft.KeyboardType.MULTILINE if multiline else ft.KeyboardType.TEXT),
        width=width, expand=expand, max_length=max_length, prefix_icon=prefix_icon, suffix=suffix,
        border_radius=12, text_size=16,
    )
    return tid(field, identifier), field


def dropdown(label: str, identifier: str, options: list[tuple[str, str]], *, value: str | None = None,
             on_select: Handler = None, width: float | None = None, expand: bool | None = None) -> tuple[
                 ft.Semantics, ft.Dropdown]:
    """A dropdown of (key, words) options. Its wrapper carries the label for screen readers,
    which the Flet dropdown does not expose by itself."""
    dd = ft.Dropdown(label=label, value=value, on_select=on_select, width=width, expand=expand,
                     options=[ft.DropdownOption(key=k, text=v) for k, v in options], border_radius=12)
    return tid(dd, identifier, label), dd


def labelled(label: str, value: str, identifier: str | None = None) -> ft.Control:
    """A read-only line of a profile: small label above, value below. (Not `selectable`: in
    Flet's web build a selectable text becomes an empty text field to screen readers.)"""
    column = ft.Column([ft.Text(label, size=12, color=ft.Colors.ON_SURFACE_VARIANT),
                        ft.Text(value, size=16)], spacing=0)
    return tid(column, identifier) if identifier else column


def page_body(controls: list[ft.Control], *, wide: bool, max_width: int = 720, scroll: bool = True,
              padding: int = 16) -> ft.Control:
    """A screen's scrolling column: full width on a phone, centred and at most `max_width` wide
    on a wider window."""
    column = ft.Column(controls, spacing=8, scroll=ft.ScrollMode.AUTO if scroll else None, expand=True,
                       horizontal_alignment=ft.CrossAxisAlignment.STRETCH)
    if not wide:
        return ft.Container(column, padding=padding, expand=True)
    # in a centred column a fixed width is only a maximum: it shrinks to what is there
    inner = ft.Container(column, padding=padding, width=max_width, expand=True)
    return ft.Column([inner], horizontal_alignment=ft.CrossAxisAlignment.CENTER, expand=True)


def banner(text: str, *, tone: str = "info", identifier: str | None = None, actions: list[ft.Control] | None = None,
           icon: Any = None) -> ft.Control:
    colors = {"info": ft.Colors.SECONDARY_CONTAINER, "warn": ft.Colors.TERTIARY_CONTAINER,
              "error": ft.Colors.ERROR_CONTAINER}
    body: list[ft.Control] = [ft.Row([ft.Icon(icon or ft.Icons.INFO_OUTLINE),
                                      ft.Text(text, expand=True, size=15)], spacing=12)]
    if actions:
        body.append(ft.Row(actions, wrap=True, spacing=8))
    box = ft.Container(ft.Column(body, spacing=8), bgcolor=colors.get(tone, colors["info"]), padding=12,
                       border_radius=12)
    return tid(box, identifier) if identifier else box


def confirm_dialog(title: str, content: ft.Control, *, confirm: str, on_confirm: Handler, cancel: str,
                   on_cancel: Handler, identifier: str, icon: Any = None) -> ft.AlertDialog:
    """A question before something that cannot be undone or that writes personal data out:
    `<identifier>-cancel` and `<identifier>-confirm` are the two buttons."""
    return ft.AlertDialog(
        title=ft.Text(title), content=content,
        actions=[text_button(cancel, on_cancel, f"{identifier}-cancel"),
                 primary_button(confirm, on_confirm, f"{identifier}-confirm", icon=icon)],
    )


class ErrorLine:
    """A problem shown under a form or a group of choices; hidden while there is none.

    Hidden, not emptied: in Flet 1.0's web build a semantics node whose text went empty and came
    back loses its words in the accessibility tree, so the line is shown and hidden instead."""

    def __init__(self, identifier: str, *, size: int = 15, bold: bool = False) -> None:
        self.text = ft.Text("", color=ft.Colors.ERROR, size=size, weight=ft.FontWeight.BOLD if bold else None)
        self.control = tid(self.text, identifier)
        self.control.visible = False

    def show(self, words: str) -> None:
        self.text.value = words
        self.control.visible = bool(words)
