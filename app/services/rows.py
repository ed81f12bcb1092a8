"""The plain rows of `app.state` made from the workspace's records (a contact with its person's
alias and its place's name, a follow-up, a person with their last contact). Functions of the
workspace, called by the facade's parts (`records`, `desk`) in their worker threads; they read
only, and build no control.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from models.errors import NotFound
from models.workspace import Workspace

from ..state import ContactRow, FollowUpRow, PersonRow

__all__ = ["alias", "place_name", "contact_row", "follow_up_row", "person_row"]


def alias(ws: Workspace, person_id: str | None) -> str | None:
    if not person_id:
        return None
    try:
        return ws.get_person(person_id).alias
    except NotFound:
        return None


def place_name(ws: Workspace, place_id: str | None, cache: dict[str, str | None]) -> str | None:
    if not place_id:
        return None
    if place_id not in cache:
        place = ws.find_place(place_id)
        cache[place_id] = place.name if place else None
    return cache[place_id]


def contact_row(ws: Workspace, c: Any, places: dict[str, str | None]) -> ContactRow:
    return ContactRow(
        id=c.id, at=c.at, person_id=c.person_id, person_alias=alias(ws, c.person_id),
        place_id=c.place_id, place_name=place_name(ws, c.place_id, places),
        kind=c.kind.value, living=c.living.value if c.living else None,
        services=tuple(s.value for s in c.services), referrals=tuple(r.value for r in c.referrals),
        note=c.note, follow_up=c.follow_up,
    )


def follow_up_row(ws: Workspace, f: Any, today: date) -> FollowUpRow:
    return FollowUpRow(f.id, f.due, f.person_id, alias(ws, f.person_id), f.note, f.due < today)


def person_row(ws: Workspace, p: Any) -> PersonRow:
    return PersonRow(p.id, p.alias, p.status.value, p.category.value if p.category else None,
                     ws.last_contact_at(p.id), p.description)
