"""Reading the records: one record by id, the lists the screens show (persons most recently met
first, contacts newest first, places most used first, follow-ups by due date) and the search, all
from the in-memory index of opened records, never from the file.

It must never write, and never answer while the vault is locked.
"""

from __future__ import annotations

from datetime import date, datetime

from ..domain.tables import ContactPublic, FollowUpPublic, PersonPublic, PlacePublic
from ..domain.vocab import RecordType
from ..errors import InvalidInput, NotFound, StoreError, TamperedRecord
from .session import Session
from .values import SearchResult

__all__ = ["Queries", "PERSON_CANDIDATES"]

PERSON_CANDIDATES = 5000  # matching persons ranked by a search before its list is cut to the limit


class Queries:
    def __init__(self, session: Session) -> None:
        self._s = session

    def missing(self, rtype: RecordType, rid: str) -> StoreError:
        """NotFound, or the TamperedRecord of a row that is there but failed its check at unlock."""
        for exc in self._s.damaged:
            if exc.kind == rtype.value and exc.record_id == rid:
                return TamperedRecord(exc.kind, exc.record_id)
        return NotFound(rtype.value, rid)

    def require(self, rtype: RecordType, rid: str, field_name: str) -> None:
        if rid not in self._s.index.records[rtype]:
            raise InvalidInput(field_name, f"no {rtype.value} with id {rid}")

    def resolve(self, rtype: RecordType, prefix: str) -> str:
        """A full id from a unique prefix of at least 6 characters (for the CLI)."""
        prefix = prefix.strip().lower()
        table = self._s.index.records[rtype]
        if prefix in table:
            return prefix
        if len(prefix) >= 6:
            found = [rid for rid in table if rid.startswith(prefix)]
            if len(found) == 1:
                return found[0]
        raise NotFound(rtype.value, prefix)

    # -------------------------------------------------------------------- persons
    def get_person(self, person_id: str) -> PersonPublic:
        values = self._s.index.records[RecordType.PERSON].get(person_id)
        if values is None:
            self._s.unlocked_vault()
            raise self.missing(RecordType.PERSON, person_id)
        return PersonPublic.model_validate(values)

    def persons(self, *, status: str | None = None, category: str | None = None,
                not_seen_days: int | None = None) -> list[PersonPublic]:
        """Persons, most recently met first (never met: by alias, last)."""
        self._s.unlocked_vault()
        index = self._s.index
        last = index.last_contact
        out = []
        cutoff = None
        if not_seen_days is not None:
            cutoff = datetime.now().timestamp() - not_seen_days * 86400
        for rid, values in index.records[RecordType.PERSON].items():
            if status and values.get("status") != status:
                continue
            if category and values.get("category") != category:
                continue
            if cutoff is not None:
                seen = last.get(rid)
                if seen and datetime.fromisoformat(seen).timestamp() >= cutoff:
                    continue
            out.append(values)
        out.sort(key=lambda v: v.get("alias", "").casefold())
        out.sort(key=lambda v: last.get(v["id"], ""), reverse=True)  # stable: ties keep the alias order
        return [PersonPublic.model_validate(v) for v in out]

    def last_contact_at(self, person_id: str) -> datetime | None:
        at = self._s.index.last_contact.get(person_id)
        return datetime.fromisoformat(at) if at else None

    def person_record_ids(self, person_id: str) -> list[str]:
        """The person, every record that names them (contacts, follow-ups) and the persons merged
        into them (whose tombstones still hold what they were)."""
        self._s.unlocked_vault()
        index = self._s.index
        ids = [person_id, *sorted(index.contacts_of.get(person_id, ()))]
        ids += [fid for fid, f in index.records[RecordType.FOLLOWUP].items() if f.get("person_id") == person_id]
        ids += sorted(d for d in index.merged if index.person_of(d) == person_id)
        return ids

    # ------------------------------------------------------------------- contacts
    def get_contact(self, contact_id: str) -> ContactPublic:
        values = self._s.index.records[RecordType.CONTACT].get(contact_id)
        if values is None:
            self._s.unlocked_vault()
            raise self.missing(RecordType.CONTACT, contact_id)
        return ContactPublic.model_validate(values)

    def contacts(self, *, person_id: str | None = None, limit: int = 50) -> list[ContactPublic]:
        """Most recent first."""
        self._s.unlocked_vault()
        index = self._s.index
        table = index.records[RecordType.CONTACT]
        return [ContactPublic.model_validate(table[c]) for c in index.recent_contacts(limit, person_id)]

    def contacts_on(self, day: date) -> list[ContactPublic]:
        self._s.unlocked_vault()
        index = self._s.index
        table = index.records[RecordType.CONTACT]
        start = day.isoformat()
        out = []
        for cid in index.contacts_since(start):
            values = table[cid]
            if str(values["at"])[:10] == start:
                out.append(ContactPublic.model_validate(values))
        return out

    # --------------------------------------------------------------------- places
    def places(self) -> list[PlacePublic]:
        """Places, most recently used first."""
        self._s.unlocked_vault()
        index = self._s.index
        used: dict[str, str] = {}
        for cid in index.recent_contacts(2000):
            pid = index.records[RecordType.CONTACT][cid].get("place_id")
            if pid and pid not in used:
                used[pid] = cid
        table = index.records[RecordType.PLACE]
        order = [p for p in used if p in table] + sorted(
            (p for p in table if p not in used), key=lambda p: str(table[p].get("name", "")).casefold()
        )
        return [PlacePublic.model_validate(table[p]) for p in order]

    def find_place(self, name_or_id: str) -> PlacePublic | None:
        table = self._s.index.records[RecordType.PLACE]
        if name_or_id in table:
            return PlacePublic.model_validate(table[name_or_id])
        want = name_or_id.strip().casefold()
        for values in table.values():
            if str(values.get("name", "")).casefold() == want:
                return PlacePublic.model_validate(values)
        return None

    # ------------------------------------------------------------------ follow-ups
    def follow_ups(self, *, due_by: date | None = None, include_done: bool = False,
                   person_id: str | None = None) -> list[FollowUpPublic]:
        """Follow-ups by due date (oldest first); `due_by` keeps those due on or before it."""
        self._s.unlocked_vault()
        out = []
        for values in self._s.index.records[RecordType.FOLLOWUP].values():
            if not include_done and values.get("done"):
                continue
            if person_id and values.get("person_id") != person_id:
                continue
            if due_by and str(values["due"]) > due_by.isoformat():
                continue
            out.append(values)
        out.sort(key=lambda v: (str(v["due"]), v["id"]))
        return [FollowUpPublic.model_validate(v) for v in out]

    # ---------------------------------------------------------------------- search
    def search(self, text: str, *, limit: int = 50) -> SearchResult:
        """Persons (by alias, name, description, usual place, or a note of one of their contacts),
        contacts by note, places by name or zone."""
        self._s.unlocked_vault()
        index = self._s.index
        words = text.split()
        recs = index.records
        contact_ids = index.text[RecordType.CONTACT].search(words, limit)
        place_ids = index.text[RecordType.PLACE].search(words, limit)
        # every matching person is ranked before the list is cut: stopping at `limit` matches in
        # the index's own order would drop the person met yesterday for eight met years ago
        person_ids = index.text[RecordType.PERSON].search(words, max(limit, PERSON_CANDIDATES))
        for cid in contact_ids:
            pid = recs[RecordType.CONTACT][cid].get("person_id")
            if pid and pid in recs[RecordType.PERSON] and pid not in person_ids:
                person_ids.append(pid)
        first = words[0].casefold() if words else ""
        last = index.last_contact
        persons = recs[RecordType.PERSON]
        # alias prefix matches first, then most recently met, then never met; ties by alias and id,
        # so that the same data gives the same list on every device and after every unlock
        person_ids.sort(key=lambda p: (str(persons[p].get("alias", "")).casefold(), p))
        person_ids.sort(key=lambda p: last.get(p, ""), reverse=True)
        person_ids.sort(key=lambda p: not str(persons[p].get("alias", "")).casefold().startswith(first))
        del person_ids[limit:]
        return SearchResult(
            persons=[PersonPublic.model_validate(recs[RecordType.PERSON][p]) for p in person_ids],
            contacts=sorted((ContactPublic.model_validate(recs[RecordType.CONTACT][c]) for c in contact_ids),
                            key=lambda c: c.at, reverse=True),
            places=[PlacePublic.model_validate(recs[RecordType.PLACE][p]) for p in place_ids],
        )
