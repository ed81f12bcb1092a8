"""Every row of a list gets an identifier of its own (issue 16): record ids are a device's prefix
and a counter, so the first 8 characters were the same for every record one device made."""

from __future__ import annotations

from datetime import date, datetime

from app.i18n import Translator
from app.state import ContactRow, FollowUpRow, PersonRow, PlaceRow
from app.ui.components.rows import contact_tile, follow_up_tile, person_tile, place_tile

PREFIX = "9f1c2b3a4d5e6f70"  # one device's record prefix
A, B = PREFIX + "0000000000000001", PREFIX + "0000000000000002"


def test_two_records_of_one_device_get_two_identifiers() -> None:
    t = Translator("da")
    at = datetime(2026, 11, 2, 9)

    def contact(rid: str) -> ContactRow:
        return ContactRow(rid, at, None, None, None, None, "street", None, (), (), None, None)

    pairs = [
        (contact_tile(contact(A), t, None), contact_tile(contact(B), t, None)),
        (person_tile(PersonRow(A, "a", "active", None, None), t, None),
         person_tile(PersonRow(B, "b", "active", None, None), t, None)),
        (place_tile(PlaceRow(A, "a", None), t, None), place_tile(PlaceRow(B, "b", None), t, None)),
        (follow_up_tile(FollowUpRow(A, date(2026, 12, 1), None, None, None, False), t, None, None),
         follow_up_tile(FollowUpRow(B, date(2026, 12, 1), None, None, None, False), t, None, None)),
    ]
    for one, other in pairs:
        assert one.identifier != other.identifier
        assert one.identifier.endswith(A) and other.identifier.endswith(B)


def test_a_chosen_chip_is_said_by_more_than_a_pale_fill() -> None:
    """WCAG 1.4.11 (issue 16): a check mark, also on a chip with an icon of its own, and a border."""
    import flet as ft

    from app.ui.components.ui import choice_chip

    chosen = choice_chip("Halmtorvet", True, None, "place-chip-x", icon=ft.Icons.PLACE_OUTLINED).content
    other = choice_chip("Nørreport", False, None, "place-chip-y", icon=ft.Icons.PLACE_OUTLINED).content
    assert chosen.leading.icon == ft.Icons.CHECK and chosen.border_side is not None and chosen.border_side.width >= 2
    assert other.leading.icon == ft.Icons.PLACE_OUTLINED and other.border_side is None
