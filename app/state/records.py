"""The rows the worker's screens show: contacts, follow-ups, persons and places as plain frozen
data (filled by the facade from the workspace), a person's and a place's detail, today's page and
the new-contact form's choices. No I/O, no control.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

__all__ = ["ContactRow", "FollowUpRow", "PersonRow", "PlaceRow", "ConflictRow", "PersonDetail", "PlaceDetail", "TodayData", "ContactChoices"]

# --------------------------------------------------------------------------- what screens show
@dataclass(frozen=True)
class ContactRow:
    id: str
    at: datetime
    person_id: str | None
    person_alias: str | None  # None: anonymous (or a person this device cannot see)
    place_id: str | None
    place_name: str | None
    kind: str
    living: str | None
    services: tuple[str, ...]
    referrals: tuple[str, ...]
    note: str | None
    follow_up: date | None


@dataclass(frozen=True)
class FollowUpRow:
    id: str
    due: date
    person_id: str | None
    person_alias: str | None
    note: str | None
    overdue: bool


@dataclass(frozen=True)
class PersonRow:
    id: str
    alias: str
    status: str
    category: str | None
    last_contact: datetime | None
    description: str | None = None


@dataclass(frozen=True)
class PlaceRow:
    id: str
    name: str
    zone: str | None
    last_alias: str | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class ConflictRow:
    field: str
    value_a: Any
    at_a: datetime
    device_a: str
    value_b: Any  # shown meanwhile
    at_b: datetime
    device_b: str


@dataclass
class PersonDetail:
    person: Any  # models.domain.tables.PersonPublic
    usual_place_name: str | None
    contacts: list[ContactRow]
    follow_ups: list[FollowUpRow]
    conflicts: list[ConflictRow]
    last_contact: datetime | None


@dataclass
class PlaceDetail:
    place: PlaceRow
    contacts: list[ContactRow]


@dataclass
class TodayData:
    day: date
    contacts: list[ContactRow]
    follow_ups: list[FollowUpRow]
    joined: bool
    device_status: str | None


@dataclass
class ContactChoices:
    recent_persons: list[PersonRow]
    places: list[PlaceRow]
    suggested_place_id: str | None = None
