"""The data model: one SQLModel family per entity (Base / Create / Update / Public, and the table).

The `table=True` classes are what the SQLite file holds: ids, key epochs and sealed blobs, never a
personal field in the clear. The Base families say what a record means once opened: they validate
every value that comes from a form, a CLI flag or a remote op before it is sealed. Fields listed in
`REVIEWED_FIELDS` are the ones whose concurrent edits are kept for a person to review.
This module must never open a database or hold a key; `store` and `vault` do that.

Why one module of about 600 lines: the five families share the validators above them, the local tables
below them and the maps at the end (`FAMILIES`, `REVIEWED_FIELDS`, `SEALED_TABLES`) that name them
all; a reader compares a family with its neighbours on one page, and `tests/test_migrations.py`
checks the migrated file against this one module.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlmodel import Field, SQLModel

from .vocab import (
    AuditAction,
    Consent,
    ContactKind,
    Ethos,
    Gender,
    HomelessCategory,
    Living,
    Need,
    RecordType,
    Referral,
    Service,
    Status,
)

__all__ = [
    "PersonBase", "PersonCreate", "PersonUpdate", "PersonPublic", "Person",
    "ContactBase", "ContactCreate", "ContactUpdate", "ContactPublic", "Contact",
    "PlaceBase", "PlaceCreate", "PlaceUpdate", "PlacePublic", "Place",
    "FollowUpBase", "FollowUpCreate", "FollowUpUpdate", "FollowUpPublic", "FollowUp",
    "AuditEventBase", "AuditEventCreate", "AuditEventPublic", "AuditEvent",
    "Keyring", "Meta", "Outbox", "SyncState", "ReviewConflict", "SetAside", "Inbox", "Dirty", "Erased", "Snapshot",
    "SEALED_TABLES", "FAMILIES", "REVIEWED_FIELDS", "LOCAL_TABLES",
    "check_line", "check_text", "CONTROL_CHARACTERS", "EARLIEST",
]

_CPR = re.compile(r"^\d{6}-?\d{4}$")
_Short = Field(default=None, max_length=120)
_Text = Field(default=None, max_length=4000)


def _strip(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


def _check_cpr(v: str | None) -> str | None:
    if v is None:
        return v
    if not _CPR.match(v):
        raise PydanticCustomError("cpr_format", "a CPR number is 10 digits, DDMMYY-XXXX")
    digits = v.replace("-", "")
    try:
        date(2000, int(digits[2:4]), int(digits[0:2]))
    except ValueError:
        raise PydanticCustomError("cpr_date", "a CPR number starts with a valid date DDMMYY") from None
    return f"{digits[:6]}-{digits[6:]}"


# ------------------------------------------------------------------------- free text and dates
# C0 and C1 control characters and DEL: a NUL or an escape sequence typed (or synced) into an alias
# or a note could drive the terminal of whoever lists it. Notes keep their line breaks and tabs.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
EARLIEST = date(1900, 1, 1)  # no record of this work is older; a date before it is a typing slip
_LATEST_DUE = date(2100, 12, 31)


def check_line(v: Any) -> Any:
    """One line of free text (an alias, a name, a place): no control characters at all."""
    if isinstance(v, str) and CONTROL_CHARACTERS.search(v):
        raise PydanticCustomError("control_characters", "control characters (such as NUL or ESC) are not allowed")
    if isinstance(v, list):
        for item in v:
            check_line(item)
    return v


def check_text(v: Any) -> Any:
    """Free text of several lines (a note): line breaks and tabs, no other control characters.
    A Windows line break becomes a plain one."""
    if isinstance(v, str):
        v = v.replace("\r\n", "\n")
        if _CONTROL_IN_TEXT.search(v):
            raise PydanticCustomError("control_characters",
                                      "control characters (such as NUL or ESC) are not allowed; line breaks are")
    return v


def _check_day(v: date | None, *, latest: date) -> None:
    if v is None:
        return
    if v < EARLIEST:
        raise PydanticCustomError("date_too_early", "a date from {earliest} on", {"earliest": EARLIEST.isoformat()})
    if v > latest:
        raise PydanticCustomError("date_too_late", "a date up to {latest}", {"latest": latest.isoformat()})


# What another device wrote is checked against fixed bounds only: a bound relative to this
# device's clock would set aside a colleague's record because one of the two clocks is off.
REMOTE = {"remote": True}  # the validation context of a remote op


def _written_elsewhere(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("remote"))


def _past_day(cls: Any, v: date | None, info: ValidationInfo) -> date | None:
    """A day that has happened (a status or consent date): from 1900 to tomorrow (time zones)."""
    _check_day(v, latest=_LATEST_DUE if _written_elsewhere(info) else date.today() + timedelta(days=1))
    return v


def _due_day(cls: Any, v: date | None) -> date | None:
    """A day something is planned for: from 1900 to the end of 2100."""
    _check_day(v, latest=_LATEST_DUE)
    return v


def _meeting_time(cls: Any, v: datetime | None, info: ValidationInfo) -> datetime | None:
    """When a meeting happened: from 1900, and not more than a day ahead of this device's clock
    (a device a little ahead, a time zone away; a contact dated 9999 would sort first for ever).
    Written elsewhere: up to the end of 2100."""
    if v is None:
        return v
    if v.date() < EARLIEST:
        raise PydanticCustomError("date_too_early", "a date from {earliest} on", {"earliest": EARLIEST.isoformat()})
    if _written_elsewhere(info):
        if v.date() > _LATEST_DUE:
            raise PydanticCustomError("date_too_late", "a date up to {latest}", {"latest": _LATEST_DUE.isoformat()})
        return v
    now = datetime.now(UTC) if v.tzinfo else datetime.now()
    if v > now + timedelta(days=1):
        raise PydanticCustomError("date_in_future", "not more than a day in the future")
    return v


def _birth_year(cls: Any, v: int | None, info: ValidationInfo) -> int | None:
    latest = _LATEST_DUE.year if _written_elsewhere(info) else date.today().year
    if v is not None and not 1900 <= v <= latest:
        raise PydanticCustomError("birth_year", "a year from 1900 to {year}", {"year": latest})
    return v


def _line(cls: Any, v: Any) -> Any:
    return check_line(v)


def _text(cls: Any, v: Any) -> Any:
    return check_text(v)


# --------------------------------------------------------------------------------------- Person
class PersonBase(SQLModel):
    alias: str = Field(min_length=1, max_length=80)  # street name or what the team calls them
    full_name: str | None = _Short
    cpr: str | None = Field(default=None, max_length=11)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Gender | None = None
    nationality: str | None = Field(default=None, max_length=60)
    languages: list[str] = Field(default_factory=list, max_length=10)
    description: str | None = _Text  # for recognition on the street
    category: HomelessCategory | None = None
    ethos: Ethos | None = None
    consent: Consent = Consent.NONE
    consent_date: date | None = None
    consent_scope: str | None = Field(default=None, max_length=400)
    status: Status = Status.ACTIVE
    status_date: date | None = None
    icm_worker: str | None = Field(default=None, max_length=80)
    needs: list[Need] = Field(default_factory=list)
    safety_note: str | None = Field(default=None, max_length=1000)  # for worker safety
    usual_place: str | None = Field(default=None, max_length=32)  # a Place id
    retention_note: str | None = Field(default=None, max_length=1000)  # why kept past the retention time

    @field_validator("alias", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @field_validator(
        "full_name", "cpr", "nationality", "description", "consent_scope", "icm_worker",
        "safety_note", "usual_place", "retention_note", mode="before",
    )
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return _strip(v)

    @field_validator("cpr")
    @classmethod
    def _cpr(cls, v: str | None) -> str | None:
        return _check_cpr(v)


_PERSON_LINES = ("alias", "full_name", "nationality", "languages", "icm_worker", "usual_place")
_PERSON_TEXTS = ("description", "consent_scope", "safety_note", "retention_note")


class PersonCreate(PersonBase):
    # on what is written (forms, flags, remote ops), not on what is read: a record stored by an
    # older version is still shown (the CLI escapes what it prints)
    _lines = field_validator(*_PERSON_LINES)(_line)
    _texts = field_validator(*_PERSON_TEXTS)(_text)
    _days = field_validator("consent_date", "status_date")(_past_day)
    _year = field_validator("birth_year")(_birth_year)


class PersonUpdate(SQLModel):
    alias: str | None = Field(default=None, min_length=1, max_length=80)
    full_name: str | None = _Short
    cpr: str | None = Field(default=None, max_length=11)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Gender | None = None
    nationality: str | None = Field(default=None, max_length=60)
    languages: list[str] | None = None
    description: str | None = _Text
    category: HomelessCategory | None = None
    ethos: Ethos | None = None
    consent: Consent | None = None
    consent_date: date | None = None
    consent_scope: str | None = Field(default=None, max_length=400)
    status: Status | None = None
    status_date: date | None = None
    icm_worker: str | None = Field(default=None, max_length=80)
    needs: list[Need] | None = None
    safety_note: str | None = Field(default=None, max_length=1000)
    usual_place: str | None = Field(default=None, max_length=32)
    retention_note: str | None = Field(default=None, max_length=1000)

    @field_validator("cpr", mode="before")
    @classmethod
    def _cpr(cls, v: Any) -> Any:
        return _check_cpr(_strip(v))

    _lines = field_validator(*_PERSON_LINES)(_line)
    _texts = field_validator(*_PERSON_TEXTS)(_text)
    _days = field_validator("consent_date", "status_date")(_past_day)
    _year = field_validator("birth_year")(_birth_year)


class PersonPublic(PersonBase):
    id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Person(SQLModel, table=True):
    __tablename__ = "person"
    id: str = Field(primary_key=True, max_length=32)
    key_epoch: int
    sealed: bytes


# -------------------------------------------------------------------------------------- Contact
class ContactBase(SQLModel):
    at: datetime  # when the meeting happened (local time of the worker)
    person_id: str | None = Field(default=None, max_length=32)  # None: anonymous contact
    place_id: str | None = Field(default=None, max_length=32)
    lat: float | None = Field(default=None, ge=-90, le=90)  # coarse, only when asked for
    lon: float | None = Field(default=None, ge=-180, le=180)
    workers: list[str] = Field(default_factory=list, max_length=10)
    kind: ContactKind = ContactKind.STREET
    living: Living | None = None  # where the person sleeps tonight
    services: list[Service] = Field(default_factory=list)
    referrals: list[Referral] = Field(default_factory=list)
    note: str | None = _Text
    follow_up: date | None = None

    @field_validator("note", "person_id", "place_id", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return _strip(v)

    @field_validator("lat", "lon")
    @classmethod
    def _coarse(cls, v: float | None) -> float | None:
        # about 100 m: enough to find the spot again, not enough to follow anybody
        return None if v is None else round(v, 3)


class ContactCreate(ContactBase):
    _lines = field_validator("workers", "person_id", "place_id")(_line)
    _texts = field_validator("note")(_text)
    _at = field_validator("at")(_meeting_time)
    _due = field_validator("follow_up")(_due_day)


class ContactUpdate(SQLModel):
    at: datetime | None = None
    person_id: str | None = None
    place_id: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    workers: list[str] | None = None
    kind: ContactKind | None = None
    living: Living | None = None
    services: list[Service] | None = None
    referrals: list[Referral] | None = None
    note: str | None = _Text
    follow_up: date | None = None

    _lines = field_validator("workers", "person_id", "place_id")(_line)
    _texts = field_validator("note")(_text)
    _at = field_validator("at")(_meeting_time)
    _due = field_validator("follow_up")(_due_day)


class ContactPublic(ContactBase):
    id: str


class Contact(SQLModel, table=True):
    __tablename__ = "contact"
    id: str = Field(primary_key=True, max_length=32)
    key_epoch: int
    sealed: bytes


# ---------------------------------------------------------------------------------------- Place
class PlaceBase(SQLModel):
    name: str = Field(min_length=1, max_length=80)
    zone: str | None = Field(default=None, max_length=60)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @field_validator("lat", "lon")
    @classmethod
    def _coarse(cls, v: float | None) -> float | None:
        return None if v is None else round(v, 3)


class PlaceCreate(PlaceBase):
    _lines = field_validator("name", "zone")(_line)


class PlaceUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None

    _lines = field_validator("name", "zone")(_line)


class PlacePublic(PlaceBase):
    id: str


class Place(SQLModel, table=True):
    __tablename__ = "place"
    id: str = Field(primary_key=True, max_length=32)
    key_epoch: int
    sealed: bytes


# ------------------------------------------------------------------------------------- FollowUp
class FollowUpBase(SQLModel):
    due: date
    person_id: str | None = Field(default=None, max_length=32)
    contact_id: str | None = Field(default=None, max_length=32)
    assignee: str | None = Field(default=None, max_length=80)
    note: str | None = Field(default=None, max_length=1000)
    done: bool = False


class FollowUpCreate(FollowUpBase):
    _lines = field_validator("assignee", "person_id", "contact_id")(_line)
    _texts = field_validator("note")(_text)
    _due = field_validator("due")(_due_day)


class FollowUpUpdate(SQLModel):
    due: date | None = None
    person_id: str | None = Field(default=None, max_length=32)  # re-pointed when two persons are merged
    assignee: str | None = None
    note: str | None = None
    done: bool | None = None

    _lines = field_validator("assignee", "person_id")(_line)
    _texts = field_validator("note")(_text)
    _due = field_validator("due")(_due_day)


class FollowUpPublic(FollowUpBase):
    id: str


class FollowUp(SQLModel, table=True):
    __tablename__ = "followup"
    id: str = Field(primary_key=True, max_length=32)
    key_epoch: int
    sealed: bytes


# ----------------------------------------------------------------------------------- AuditEvent
class AuditEventBase(SQLModel):
    at: datetime
    actor: str = Field(max_length=80)  # the worker's name on the acting device
    device_id: str = Field(max_length=32)
    action: AuditAction
    target_type: RecordType | None = None
    target_id: str | None = Field(default=None, max_length=32)
    target_ids: list[str] = Field(default_factory=list, max_length=100)  # a look-up of several persons
    detail: str | None = Field(default=None, max_length=400)  # never personal data: counts, kinds


class AuditEventCreate(AuditEventBase):
    pass


class AuditEventPublic(AuditEventBase):
    id: str


class AuditEvent(SQLModel, table=True):
    __tablename__ = "auditevent"
    id: str = Field(primary_key=True, max_length=32)
    key_epoch: int
    sealed: bytes


# ------------------------------------------------------------------------------ local machinery
class Keyring(SQLModel, table=True):
    """Keys wrapped by the master key (itself wrapped by the passphrase key; `kdf` holds the
    parameters beside it). Names: `master`, `device`, `team:<epoch>`, `secret:<name>`."""

    __tablename__ = "keyring"
    name: str = Field(primary_key=True)
    wrapped: bytes
    kdf: str | None = None  # JSON parameters of the passphrase KDF, on `master` only


class Meta(SQLModel, table=True):
    """Non-personal device state: device id, clock, sequence, throttle counters, team epoch."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class Outbox(SQLModel, table=True):
    """Local ops not yet acknowledged by the server, in device sequence order."""

    __tablename__ = "outbox"
    device_seq: int = Field(primary_key=True)
    op_id: str = Field(max_length=32, unique=True)
    record_id: str = Field(max_length=32, index=True)
    key_epoch: int
    payload: bytes  # sealed {type, changed fields, HLC, base HLC}


class SyncState(SQLModel, table=True):
    """Pull cursor, last success, last error: written in the same transaction as a pulled page."""

    __tablename__ = "syncstate"
    key: str = Field(primary_key=True)
    value: str


class ReviewConflict(SQLModel, table=True):
    """An open conflict on a reviewed field; both values are inside the sealed record."""

    __tablename__ = "reviewconflict"
    record_id: str = Field(primary_key=True, max_length=32)
    field: str = Field(primary_key=True, max_length=40)
    record_type: str


class SetAside(SQLModel, table=True):
    """A remote op that could not be applied, kept with its error so the queue goes on."""

    __tablename__ = "setaside"
    op_id: str = Field(primary_key=True, max_length=32)
    record_id: str = Field(max_length=32)
    device_id: str = Field(max_length=32)
    device_seq: int
    key_epoch: int
    payload: bytes
    error: str
    at: float


class Erased(SQLModel, table=True):
    """Record ids purged under GDPR art. 17: every later op of them is dropped."""

    __tablename__ = "erased"
    record_id: str = Field(primary_key=True, max_length=32)
    at: float


class Inbox(SQLModel, table=True):
    """Pulled ops, still sealed, waiting to be folded into the rows (in the order pulled). A page
    lands here with its cursor in one transaction, so a device is done with the network as soon as
    its pages are stored; folding is local work that resumes after a restart."""

    __tablename__ = "inbox"
    n: int | None = Field(default=None, primary_key=True)
    op_id: str = Field(max_length=32)
    record_id: str = Field(max_length=32)
    device_id: str = Field(max_length=32)
    device_seq: int
    key_epoch: int
    payload: bytes


class Dirty(SQLModel, table=True):
    """A sealed row changed since the snapshot was taken (ids only, as in the sealed tables). An
    unlock opens the snapshot and then these rows alone; cleared when a snapshot is written."""

    __tablename__ = "dirty"
    record_id: str = Field(primary_key=True, max_length=32)
    record_type: str


class Snapshot(SQLModel, table=True):
    """The opened index, sealed whole at lock, so that the next unlock opens one blob instead of
    every row. Valid only while `gen` equals the store's change counter; otherwise ignored."""

    __tablename__ = "snapshot"
    name: str = Field(primary_key=True)
    gen: int
    key_epoch: int
    sealed: bytes


class Notice(SQLModel, table=True):
    """Something a device refused or set aside for a security reason (a key or a purge the
    coordinator did not sign, an audit event rewritten, an op from the future, an unsynced edit of
    an erased record): what the user is told instead of a silent change. Ids and kinds only, never
    personal data: the table is not sealed."""

    __tablename__ = "notice"
    n: int | None = Field(default=None, primary_key=True)
    at: float
    kind: str = Field(max_length=40)
    record_id: str | None = Field(default=None, max_length=32)
    device_id: str | None = Field(default=None, max_length=32)
    detail: str = ""


class Sent(SQLModel, table=True):
    """An op the server acknowledged, kept `Store.SENT_KEEP` as it was pushed (sealed): a server
    restored from an older backup lost some, and the device sends those again as they were."""

    __tablename__ = "sent"
    device_seq: int = Field(primary_key=True)
    op_id: str = Field(max_length=32)
    record_id: str = Field(max_length=32, index=True)
    key_epoch: int
    payload: bytes
    at: float = Field(index=True)


SEALED_TABLES: dict[RecordType, str] = {
    RecordType.PERSON: "person",
    RecordType.CONTACT: "contact",
    RecordType.PLACE: "place",
    RecordType.FOLLOWUP: "followup",
    RecordType.AUDIT: "auditevent",
}

LOCAL_TABLES = ("keyring", "meta", "outbox", "syncstate", "reviewconflict", "setaside", "erased", "snapshot",
                "inbox", "dirty", "notice", "sent")

# type -> (Create, Update, Public)
FAMILIES: dict[RecordType, tuple[type[SQLModel], type[SQLModel] | None, type[SQLModel]]] = {
    RecordType.PERSON: (PersonCreate, PersonUpdate, PersonPublic),
    RecordType.CONTACT: (ContactCreate, ContactUpdate, ContactPublic),
    RecordType.PLACE: (PlaceCreate, PlaceUpdate, PlacePublic),
    RecordType.FOLLOWUP: (FollowUpCreate, FollowUpUpdate, FollowUpPublic),
    RecordType.AUDIT: (AuditEventCreate, None, AuditEventPublic),
}

# Concurrent edits of these fields are kept for review (status, consent, identity, housing).
REVIEWED_FIELDS: dict[RecordType, frozenset[str]] = {
    RecordType.PERSON: frozenset(
        {"alias", "full_name", "cpr", "birth_year", "status", "consent", "category", "ethos"}
    ),
}
