"""Creating, editing and deleting the four record families (persons, contacts, places,
follow-ups), and settling a conflict: input validated against the domain's families (the merged
result too, so that an edit cannot make an invalid record), references checked, each change
written with its audit event in one transaction.

It must never write around `writes` (every change is sealed and queued the one way) and never name
a value in an error (fields and ids only).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel

from ..domain.clock import hlc_ms
from ..domain.tables import (
    FAMILIES,
    ContactCreate,
    ContactPublic,
    ContactUpdate,
    FollowUpCreate,
    FollowUpPublic,
    FollowUpUpdate,
    PersonCreate,
    PersonPublic,
    PersonUpdate,
    PlaceCreate,
    PlacePublic,
    PlaceUpdate,
)
from ..domain.vocab import AuditAction, RecordType
from ..errors import InvalidInput
from .audit import Audit
from .queries import Queries
from .session import Session
from .values import ConflictView, ms_to_dt, validate
from .writes import Writer

__all__ = ["Records"]


def _fields(model: BaseModel, *, only_set: bool) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=only_set)


class Records:
    def __init__(self, session: Session, writer: Writer, queries: Queries, audit: Audit) -> None:
        self._s = session
        self._w = writer
        self._q = queries
        self._audit = audit

    # -------------------------------------------------------------------- persons
    def add_person(self, data: PersonCreate | dict[str, Any]) -> PersonPublic:
        person = data if isinstance(data, PersonCreate) else validate(PersonCreate, data)
        if person.usual_place:
            self._q.require(RecordType.PLACE, person.usual_place, "usual_place")
        w = self._w
        with w.transaction():
            rid = w.new_id()
            values = w.write(RecordType.PERSON, rid, _fields(person, only_set=False))
            self._audit.audit_write(AuditAction.CREATE, RecordType.PERSON, rid)
        return PersonPublic.model_validate(values)

    def edit_person(self, person_id: str, data: PersonUpdate | dict[str, Any]) -> PersonPublic:
        update = data if isinstance(data, PersonUpdate) else validate(PersonUpdate, data)
        fields = _fields(update, only_set=True)
        if fields.get("alias", "") is None:
            raise InvalidInput("alias", "a person needs an alias")
        if fields.get("usual_place"):
            self._q.require(RecordType.PLACE, fields["usual_place"], "usual_place")
        current = self._q.get_person(person_id)
        if "status" in fields and fields["status"] != current.status.value and "status_date" not in fields:
            fields["status_date"] = date.today().isoformat()
        if not fields:
            return current
        # validate the merged result, so that an edit cannot make an invalid person
        validate(PersonCreate, {**current.model_dump(mode="json"), **fields}, remote=True)  # new fields: checked above
        with self._w.transaction():
            values = self._w.write(RecordType.PERSON, person_id, fields, must_exist=True)
            self._audit.audit_write(AuditAction.CHANGE, RecordType.PERSON, person_id, fields)
        return PersonPublic.model_validate(values)

    def delete_record(self, rtype: RecordType, rid: str) -> None:
        with self._w.transaction():
            self._w.write(rtype, rid, {}, delete=True, must_exist=True)
            self._audit.audit_write(AuditAction.DELETE, rtype, rid)

    # ------------------------------------------------------------------- contacts
    def add_contact(self, data: ContactCreate | dict[str, Any]) -> ContactPublic:
        contact = data if isinstance(data, ContactCreate) else validate(ContactCreate, data)
        if contact.person_id:
            self._q.require(RecordType.PERSON, contact.person_id, "person_id")
        if contact.place_id:
            self._q.require(RecordType.PLACE, contact.place_id, "place_id")
        w = self._w
        with w.transaction():  # the contact and its follow-up land together or not at all
            rid, fu_id = w.new_id(), w.new_id()
            values = w.write(RecordType.CONTACT, rid, _fields(contact, only_set=False))
            if contact.follow_up:
                w.write(RecordType.FOLLOWUP, fu_id, FollowUpCreate(
                    due=contact.follow_up, person_id=contact.person_id, contact_id=rid,
                ).model_dump(mode="json"))
            self._audit.audit_write(AuditAction.CREATE, RecordType.CONTACT, rid)
        return ContactPublic.model_validate(values)

    def edit_contact(self, contact_id: str, data: ContactUpdate | dict[str, Any]) -> ContactPublic:
        update = data if isinstance(data, ContactUpdate) else validate(ContactUpdate, data)
        fields = _fields(update, only_set=True)
        current = self._q.get_contact(contact_id)
        validate(ContactCreate, {**current.model_dump(mode="json"), **fields}, remote=True)
        with self._w.transaction():
            values = self._w.write(RecordType.CONTACT, contact_id, fields, must_exist=True)
            self._audit.audit_write(AuditAction.CHANGE, RecordType.CONTACT, contact_id, fields)
        return ContactPublic.model_validate(values)

    # --------------------------------------------------------------------- places
    def add_place(self, data: PlaceCreate | dict[str, Any]) -> PlacePublic:
        place = data if isinstance(data, PlaceCreate) else validate(PlaceCreate, data)
        w = self._w
        with w.transaction():
            values = w.write(RecordType.PLACE, w.new_id(), _fields(place, only_set=False))
        return PlacePublic.model_validate(values)

    def edit_place(self, place_id: str, data: PlaceUpdate | dict[str, Any]) -> PlacePublic:
        update = data if isinstance(data, PlaceUpdate) else validate(PlaceUpdate, data)
        values = self._w.write(RecordType.PLACE, place_id, _fields(update, only_set=True), must_exist=True)
        return PlacePublic.model_validate(values)

    # ------------------------------------------------------------------ follow-ups
    def add_follow_up(self, data: FollowUpCreate | dict[str, Any]) -> FollowUpPublic:
        fu = data if isinstance(data, FollowUpCreate) else validate(FollowUpCreate, data)
        if fu.person_id:
            self._q.require(RecordType.PERSON, fu.person_id, "person_id")
        w = self._w
        with w.transaction():
            rid = w.new_id()
            values = w.write(RecordType.FOLLOWUP, rid, _fields(fu, only_set=False))
            self._audit.audit_write(AuditAction.CREATE, RecordType.FOLLOWUP, rid)
        return FollowUpPublic.model_validate(values)

    def edit_follow_up(self, fu_id: str, data: FollowUpUpdate | dict[str, Any]) -> FollowUpPublic:
        update = data if isinstance(data, FollowUpUpdate) else validate(FollowUpUpdate, data)
        fields = _fields(update, only_set=True)
        with self._w.transaction():
            values = self._w.write(RecordType.FOLLOWUP, fu_id, fields, must_exist=True)
            self._audit.audit_write(AuditAction.CHANGE, RecordType.FOLLOWUP, fu_id, fields)
        return FollowUpPublic.model_validate(values)

    # ------------------------------------------------------------------- conflicts
    def conflicts(self) -> list[ConflictView]:
        out = []
        for rtype_s, rid, _field in self._s.store.conflicts():
            rtype = RecordType(rtype_s)
            state = self._w.state(rtype, rid)
            if state is None:
                continue
            for c in state.conflicts():
                if c.field != _field:
                    continue
                out.append(ConflictView(rtype, rid, c.field, c.a.value, c.a.stamp[1], ms_to_dt(hlc_ms(c.a.stamp[0])),
                                        c.b.value, c.b.stamp[1], ms_to_dt(hlc_ms(c.b.stamp[0]))))
        return out

    def resolve_conflict(self, record_type: RecordType, record_id: str, field_name: str, value: Any) -> None:
        """Settle a conflict with a chosen or new value: a normal change whose base covers both."""
        _cls, update_cls, _pub = FAMILIES[record_type]
        assert update_cls is not None
        checked = validate(update_cls, {field_name: value})
        fields = checked.model_dump(mode="json", include={field_name})
        self._w.write(record_type, record_id, fields, must_exist=True)
