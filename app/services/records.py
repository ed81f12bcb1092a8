"""The facade's calls behind the worker's screens: today (contacts and follow-ups due), a new
contact (the choices, the person search, the place hint, the save in one transaction), people
(the list with its filters, a person's detail, add and edit, a conflict settled) and places.
Each runs in a worker thread under the UI lock and returns the plain rows of `app.state`
(`rows`); it builds no control and never waits for the network.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from models.domain.vocab import AuditAction, RecordType
from models.errors import NotFound

from ..state import (
    ConflictRow,
    ContactChoices,
    ContactDraft,
    PersonDetail,
    PersonDraft,
    PersonRow,
    PlaceDetail,
    PlaceDraft,
    PlaceRow,
    TodayData,
)
from .rows import alias, contact_row, follow_up_row, person_row, place_name
from .session import Session

__all__ = ["RecordCalls"]


class RecordCalls(Session):
    """The records a worker sees and saves (a part of `Services`)."""

    # ------------------------------------------------------------------ today
    async def today(self) -> TodayData:
        return await self.call(self._today)

    def _today(self) -> TodayData:
        ws = self.ws
        day = date.today()
        places: dict[str, str | None] = {}
        contacts = sorted(ws.contacts_on(day), key=lambda c: c.at, reverse=True)
        fus = ws.follow_ups(due_by=day)
        return TodayData(
            day=day, contacts=[contact_row(self.ws, c, places) for c in contacts],
            follow_ups=[follow_up_row(self.ws, f, day) for f in fus],
            joined=ws.setting("team_id") is not None, device_status=ws.setting("device_status"),
        )

    async def follow_up_done(self, follow_up_id: str, done: bool = True) -> None:
        await self.call(self.ws.edit_follow_up, follow_up_id, {"done": done})

    # ------------------------------------------------------------------ new contact
    async def contact_choices(self) -> ContactChoices:
        return await self.call(self._contact_choices)

    def _contact_choices(self) -> ContactChoices:
        ws = self.ws
        recent = [person_row(self.ws, p) for p in ws.persons()[:6]]
        places = [PlaceRow(p.id, p.name, p.zone) for p in ws.places()]
        suggested = None
        last = ws.contacts(limit=1)
        if last and last[0].place_id and last[0].at >= datetime.now() - timedelta(hours=3):
            suggested = last[0].place_id  # the worker is probably still there
        return ContactChoices(recent, places, suggested)

    async def search_persons(self, text: str, limit: int = 8) -> list[PersonRow]:
        return await self.call(self._search_persons, text, limit)

    def _search_persons(self, text: str, limit: int) -> list[PersonRow]:
        shown = self.ws.persons()[:limit] if not text.strip() else self.ws.search(text, limit=limit).persons[:limit]
        self.ws.log_lookup((p.id for p in shown), "search" if text.strip() else "list")
        return [person_row(self.ws, p) for p in shown]

    async def person_row(self, person_id: str) -> PersonRow | None:
        def row() -> PersonRow | None:
            try:
                return person_row(self.ws, self.ws.get_person(person_id))
            except NotFound:
                return None

        return await self.call(row)

    async def place_hint(self, person_id: str) -> str | None:
        """Where a person is usually met: their usual place, else where they were last met."""
        return await self.call(self._place_hint, person_id)

    def _place_hint(self, person_id: str) -> str | None:
        try:
            person = self.ws.get_person(person_id)
        except NotFound:
            return None
        if person.usual_place:
            return person.usual_place
        for c in self.ws.contacts(person_id=person_id, limit=5):
            if c.place_id:
                return c.place_id
        return None

    async def save_contact(self, draft: ContactDraft) -> str:
        """Saved locally in one transaction (new person, new place and the contact together);
        never waits for the network. Returns the contact's id."""
        now = datetime.now()
        payload = draft.payload(now)
        return await self.call(self._save_contact, draft, payload)

    def _save_contact(self, draft: ContactDraft, payload: dict[str, Any]) -> str:
        ws = self.ws
        if not payload.get("workers") and ws.worker_name():
            payload["workers"] = [ws.worker_name()]  # who met the person: this device's worker, unless told
        with ws.bulk():
            if draft.new_person_alias and not draft.anonymous:
                payload["person_id"] = ws.add_person({"alias": draft.new_person_alias}).id
            if draft.new_place_name:
                found = ws.find_place(draft.new_place_name)
                payload["place_id"] = found.id if found else ws.add_place({"name": draft.new_place_name}).id
            contact = ws.add_contact(payload)
        return contact.id

    # ------------------------------------------------------------------ people
    async def persons(self, *, text: str = "", status: str | None = None, category: str | None = None,
                      not_seen_days: int | None = None, limit: int = 200) -> tuple[list[PersonRow], int]:
        return await self.call(self._persons, text, status, category, not_seen_days, limit)

    def _persons(self, text: str, status: str | None, category: str | None, not_seen_days: int | None,
                 limit: int) -> tuple[list[PersonRow], int]:
        ws = self.ws
        if text.strip():
            found = ws.search(text, limit=500).persons
            if status or category or not_seen_days is not None:
                allowed = {p.id for p in ws.persons(status=status, category=category, not_seen_days=not_seen_days)}
                found = [p for p in found if p.id in allowed]
        else:
            found = ws.persons(status=status, category=category, not_seen_days=not_seen_days)
        ws.log_lookup((p.id for p in found[:limit]), "search" if text.strip() else "list")
        return [person_row(self.ws, p) for p in found[:limit]], len(found)

    async def person_detail(self, person_id: str) -> PersonDetail:
        return await self.call(self._person_detail, person_id)

    def _person_detail(self, person_id: str) -> PersonDetail:
        ws = self.ws
        person = ws.get_person(person_id)
        places: dict[str, str | None] = {}
        contacts = [contact_row(self.ws, c, places) for c in ws.contacts(person_id=person_id, limit=200)]
        today = date.today()
        fus = [follow_up_row(self.ws, f, today) for f in ws.follow_ups(person_id=person_id)]
        conflicts = [ConflictRow(c.field, c.value_a, c.at_a, c.device_a, c.value_b, c.at_b, c.device_b)
                     for c in ws.conflicts() if c.record_id == person_id]
        ws.audit(AuditAction.READ, RecordType.PERSON, person_id)
        return PersonDetail(person, place_name(self.ws, person.usual_place, places), contacts, fus, conflicts,
                            ws.last_contact_at(person_id))

    async def add_person(self, draft: PersonDraft) -> str:
        return await self.call(lambda: self.ws.add_person(draft.payload()).id)

    async def edit_person(self, person_id: str, draft: PersonDraft) -> None:
        await self.call(self.ws.edit_person, person_id, draft.payload())

    async def resolve_conflict(self, person_id: str, field_name: str, value: Any) -> None:
        await self.call(self.ws.resolve_conflict, RecordType.PERSON, person_id, field_name, value)

    # ------------------------------------------------------------------ places
    async def places(self) -> list[PlaceRow]:
        return await self.call(self._places)

    def _places(self) -> list[PlaceRow]:
        ws = self.ws
        last: dict[str, tuple[str | None, datetime]] = {}
        for c in ws.contacts(limit=2000):
            if c.place_id and c.place_id not in last:
                last[c.place_id] = (alias(self.ws, c.person_id), c.at)
        found = []
        for p in ws.places():
            last_alias, at = last.get(p.id, (None, None))
            found.append(PlaceRow(p.id, p.name, p.zone, last_alias, at))
        return found

    async def place_detail(self, place_id: str) -> PlaceDetail:
        return await self.call(self._place_detail, place_id)

    def _place_detail(self, place_id: str) -> PlaceDetail:
        ws = self.ws
        place = ws.find_place(place_id)
        if place is None:
            raise NotFound("place", place_id)
        names: dict[str, str | None] = {}
        contacts = [contact_row(self.ws, c, names) for c in ws.contacts(limit=2000) if c.place_id == place_id][:50]
        row = PlaceRow(place.id, place.name, place.zone, contacts[0].person_alias if contacts else None,
                       contacts[0].at if contacts else None)
        return PlaceDetail(row, contacts)

    async def add_place(self, draft: PlaceDraft) -> str:
        return await self.call(lambda: self.ws.add_place(draft.payload()).id)

    async def place_names(self) -> list[PlaceRow]:
        return await self.call(lambda: [PlaceRow(p.id, p.name, p.zone) for p in self.ws.places()])
